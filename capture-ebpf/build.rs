//! Asks bpf-linker for BTF: the kernel needs BTF func_info to verify the
//! `bpf_loop` callback the classifier's header walk runs in (and BTF makes
//! verifier logs name functions and lines).
//!
//! The memory builtins (memcpy, memset, ...) come from compiler_builtins
//! with BTF the kernel refuses (a FUNC whose type id points nowhere): the
//! whole BTF is then dropped at load time and the verifier fails with
//! "missing btf func_info". So none may be linked: they are not exported,
//! and without `--bpf-expand-memcpy-in-order` (bpf-linker's default) LLVM
//! writes every constant-size memset/memcpy inline (up to 128 stores), so
//! nothing calls them.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!("cargo:rustc-link-arg-bins=--btf");
        println!("cargo:rustc-link-arg-bins=--disable-memory-builtins");
        println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
    }
}
