//! Asks bpf-linker for BTF: the kernel needs BTF func_info to verify the
//! `bpf_loop` callback the classifier's header walk runs in (and BTF makes
//! verifier logs name functions and lines).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!("cargo:rustc-link-arg-bins=--btf");
    }
}
