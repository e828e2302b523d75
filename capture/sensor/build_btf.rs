//! A repair of the XDP object's BTF, for `build.rs`.
//!
//! bpf-linker writes a FUNC for each of compiler_builtins' memory builtins
//! (memcpy, memmove, memset) whose type id points past the last type. The
//! kernel then refuses the whole BTF, aya loads the program without it, and
//! the verifier rejects the classifier's `bpf_loop` callback ("missing btf
//! func_info"). The program calls none of those functions (aya links only
//! what is called), so each such FUNC is pointed at the prototype of a valid
//! FUNC instead: the BTF is then well-formed and describes everything that
//! is loaded exactly.

/// Repairs `obj` (an ELF64 little-endian BPF object) in place; returns how
/// many FUNC entries were repaired.
pub fn repair(obj: &mut [u8]) -> Result<usize, String> {
    let (start, len) = section(obj, ".BTF")?.ok_or("no .BTF section")?;
    let btf = obj
        .get_mut(start..start + len)
        .ok_or(".BTF section out of the file")?;
    let types = type_offsets(btf)?;
    let n = types.len() as u32;
    let kind_of = |id: u32| -> Option<u32> {
        let off = *types.get(id.checked_sub(1)? as usize)?;
        Some((u32_at(btf, off + 4).ok()? >> 24) & 0x1f)
    };
    const FUNC: u32 = 12;
    const FUNC_PROTO: u32 = 13;
    let valid_proto = |t: u32| (1..=n).contains(&t) && kind_of(t) == Some(FUNC_PROTO);
    let mut proto = None;
    let mut broken = Vec::new();
    for &off in &types {
        if (u32_at(btf, off + 4)? >> 24) & 0x1f != FUNC {
            continue;
        }
        let t = u32_at(btf, off + 8)?;
        if valid_proto(t) {
            proto.get_or_insert(t);
        } else {
            broken.push(off);
        }
    }
    if broken.is_empty() {
        return Ok(0);
    }
    let proto = proto.ok_or("no valid FUNC to borrow a prototype from")?;
    for &off in &broken {
        btf[off + 8..off + 12].copy_from_slice(&proto.to_le_bytes());
    }
    Ok(broken.len())
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, String> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated at {off}"))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, String> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("truncated at {off}"))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, String> {
    Ok(u64::from(u32_at(b, off)?) | (u64::from(u32_at(b, off + 4)?) << 32))
}

/// Offset and size of the section named `name`.
fn section(obj: &[u8], name: &str) -> Result<Option<(usize, usize)>, String> {
    if obj.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not an ELF64 little-endian object".into());
    }
    let shoff = u64_at(obj, 0x28)? as usize;
    let (entsize, num, strndx) = (
        usize::from(u16_at(obj, 0x3a)?),
        usize::from(u16_at(obj, 0x3c)?),
        usize::from(u16_at(obj, 0x3e)?),
    );
    let header = |i: usize| shoff + i * entsize;
    let strtab = u64_at(obj, header(strndx) + 24)? as usize;
    for i in 0..num {
        let h = header(i);
        let at = strtab + u32_at(obj, h)? as usize;
        let end = obj[at..].iter().position(|&c| c == 0).ok_or("bad name")?;
        if &obj[at..at + end] == name.as_bytes() {
            let (off, size) = (u64_at(obj, h + 24)?, u64_at(obj, h + 32)?);
            return Ok(Some((off as usize, size as usize)));
        }
    }
    Ok(None)
}

/// Where each type of the BTF blob starts (type id `i + 1` at index `i`).
fn type_offsets(btf: &[u8]) -> Result<Vec<usize>, String> {
    if u16_at(btf, 0)? != 0xeb9f {
        return Err("bad BTF magic".into());
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (mut pos, end) = (hdr_len + type_off, hdr_len + type_off + type_len);
    let mut out = Vec::new();
    while pos < end {
        out.push(pos);
        let info = u32_at(btf, pos + 4)?;
        let vlen = (info & 0xffff) as usize;
        // Bytes after the 12-byte common part, by kind (linux/btf.h).
        let extra = match (info >> 24) & 0x1f {
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 | 19 => 12 * vlen,
            6 | 13 => 8 * vlen,
            2 | 7..=12 | 16 | 18 => 0,
            k => return Err(format!("unknown BTF kind {k}")),
        };
        pos += 12 + extra;
    }
    Ok(out)
}
