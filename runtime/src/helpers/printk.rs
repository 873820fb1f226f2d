//! `bpf_trace_printk`: a small printf over up to three 64-bit arguments.

use bpfvm_engine::helpers::HelperError;
use bpfvm_engine::vmctx::VmCtx;

use super::{neg, read};
use crate::maps::EINVAL;
use crate::object::Shared;

/// Longest string `%s` prints.
const MAX_STR: u64 = 1024;

/// The helper: formats and sends the line to the object's trace sink;
/// returns the length of the formatted text, or -EINVAL for a format the
/// kernel would refuse.
pub(crate) fn trace_printk(
    shared: &Shared,
    ctx: &mut VmCtx,
    fmt: u64,
    size: u64,
    args: [u64; 3],
) -> Result<u64, HelperError> {
    let bytes = read(ctx, fmt, size)?;
    let Some(end) = bytes.iter().position(|&b| b == 0) else {
        return Ok(neg(EINVAL));
    };
    let read_str = |addr: u64| read_c_string(ctx, addr);
    match format(&bytes[..end], &args, &read_str) {
        Some(text) => {
            shared.trace(text.strip_suffix('\n').unwrap_or(&text));
            Ok(text.len() as u64)
        }
        None => Ok(neg(EINVAL)),
    }
}

/// The NUL-terminated string at `addr`, read while the run may read it.
fn read_c_string(ctx: &VmCtx, addr: u64) -> String {
    let mut out = Vec::new();
    for i in 0..MAX_STR {
        let Some(a) = addr.checked_add(i) else { break };
        match read(ctx, a, 1) {
            Ok(b) if b[0] != 0 => out.push(b[0]),
            Ok(_) => break,
            Err(_) => {
                if i == 0 {
                    return "(efault)".into();
                }
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Formats `fmt` with `args`; `None` for an unknown conversion or too
/// many conversions.
pub(crate) fn format(fmt: &[u8], args: &[u64], read_str: &dyn Fn(u64) -> String) -> Option<String> {
    let mut out = String::new();
    let mut next = args.iter();
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        i += 1;
        if c != b'%' {
            out.push(c as char);
            continue;
        }
        if fmt.get(i) == Some(&b'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let (mut left, mut zero, mut plus, mut space, mut alt) =
            (false, false, false, false, false);
        while let Some(&f) = fmt.get(i) {
            match f {
                b'-' => left = true,
                b'0' => zero = true,
                b'+' => plus = true,
                b' ' => space = true,
                b'#' => alt = true,
                _ => break,
            }
            i += 1;
        }
        let mut width = 0usize;
        while let Some(d) = fmt.get(i).filter(|d| d.is_ascii_digit()) {
            width = (width * 10 + (d - b'0') as usize).min(256);
            i += 1;
        }
        let mut longs = 0;
        while fmt.get(i) == Some(&b'l') {
            longs += 1;
            i += 1;
        }
        if longs > 2 {
            return None;
        }
        let conv = *fmt.get(i)?;
        i += 1;
        let arg = *next.next()?;
        let wide = longs > 0 || conv == b'p';
        let body = match conv {
            b'd' | b'i' => {
                let v = if wide { arg as i64 } else { arg as i32 as i64 };
                let sign = if v < 0 {
                    "-"
                } else if plus {
                    "+"
                } else if space {
                    " "
                } else {
                    ""
                };
                (sign.to_string(), v.unsigned_abs().to_string())
            }
            b'u' => {
                let v = if wide { arg } else { arg as u32 as u64 };
                (String::new(), v.to_string())
            }
            b'x' | b'X' | b'p' => {
                let v = if wide { arg } else { arg as u32 as u64 };
                let digits = if conv == b'X' {
                    format!("{v:X}")
                } else {
                    format!("{v:x}")
                };
                let prefix = if conv == b'p' || (alt && v != 0) {
                    "0x"
                } else {
                    ""
                };
                (prefix.to_string(), digits)
            }
            b'c' => {
                if longs > 0 {
                    return None;
                }
                (String::new(), (arg as u8 as char).to_string())
            }
            b's' => {
                if longs > 0 {
                    return None;
                }
                (String::new(), read_str(arg))
            }
            _ => return None,
        };
        pad(
            &mut out,
            body,
            width,
            left,
            zero && !left && conv != b's' && conv != b'c',
        );
    }
    Some(out)
}

fn pad(out: &mut String, (prefix, digits): (String, String), width: usize, left: bool, zero: bool) {
    let len = prefix.len() + digits.chars().count();
    let fill = width.saturating_sub(len);
    if left {
        out.push_str(&prefix);
        out.push_str(&digits);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if zero {
        out.push_str(&prefix);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(&digits);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(&prefix);
        out.push_str(&digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fmt: &str, args: &[u64]) -> Option<String> {
        format(fmt.as_bytes(), args, &|a| format!("<{a}>"))
    }

    #[test]
    fn conversions() {
        assert_eq!(f("a %d b", &[-5i64 as u64]).unwrap(), "a -5 b");
        assert_eq!(f("%d", &[0xffff_ffff]).unwrap(), "-1");
        assert_eq!(f("%ld", &[0xffff_ffff]).unwrap(), "4294967295");
        assert_eq!(
            f("%lld %llu", &[u64::MAX, u64::MAX]).unwrap(),
            "-1 18446744073709551615"
        );
        assert_eq!(f("%u", &[u64::MAX]).unwrap(), "4294967295");
        assert_eq!(f("%x %X %#x", &[255, 255, 255]).unwrap(), "ff FF 0xff");
        assert_eq!(f("%lx", &[0x1_0000_0000]).unwrap(), "100000000");
        assert_eq!(f("%p", &[16]).unwrap(), "0x10");
        assert_eq!(f("%s!", &[7]).unwrap(), "<7>!");
        assert_eq!(f("%c%c", &[104, 105]).unwrap(), "hi");
        assert_eq!(f("100%%", &[]).unwrap(), "100%");
        assert_eq!(
            f("[%5d|%-5d|%05d]", &[42, 42, 42]).unwrap(),
            "[   42|42   |00042]"
        );
        assert_eq!(f("%+d", &[3]).unwrap(), "+3");
    }

    #[test]
    fn refusals() {
        assert_eq!(f("%d %d %d %d", &[1, 2, 3]), None, "too many conversions");
        assert_eq!(f("%q", &[1]), None);
        assert_eq!(f("%lllx", &[1]), None);
        assert_eq!(f("%", &[1]), None);
    }
}
