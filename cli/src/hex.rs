//! Hex text: parsing byte lists such as `b7 00 00 00` or `0xb7 0x00`, and
//! a `xxd`-style dump for people.

/// A token that is not a hex byte (or a run of byte pairs).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid hex byte `{token}` (expected pairs of hex digits such as `b7` or `0xb7`)")]
pub struct HexError {
    pub token: String,
}

/// Parses whitespace-separated hex bytes. A token is one or two hex digits
/// with an optional `0x` prefix, or an even-length run of hex digits
/// without a prefix (`b7000000` is four bytes).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let bad = || HexError {
            token: token.to_string(),
        };
        let prefixed = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"));
        let digits = prefixed.unwrap_or(token);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        match (prefixed.is_some(), digits.len()) {
            (_, 1 | 2) => out.push(u8::from_str_radix(digits, 16).map_err(|_| bad())?),
            (false, n) if n % 2 == 0 => {
                for pair in digits.as_bytes().chunks(2) {
                    let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
                    out.push(u8::from_str_radix(pair, 16).map_err(|_| bad())?);
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// Whether the text is a hex byte list ([`parse_hex`] accepts it).
pub fn looks_like_hex(text: &str) -> bool {
    parse_hex(text).is_ok()
}

/// Bytes as plain lowercase hex, no separators.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `xxd`-style dump: offset, 16 bytes in hex, printable ASCII.
pub fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let mut hex = String::new();
        for (i, b) in chunk.iter().enumerate() {
            if i == 8 {
                hex.push(' ');
            }
            hex.push_str(&format!("{b:02x} "));
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}  {hex:<49} |{ascii}|\n", row * 16));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_plugin_and_file_forms() {
        assert_eq!(
            parse_hex("b7 00  0x95\n0X0a f"),
            Ok(vec![0xb7, 0x00, 0x95, 0x0a, 0x0f])
        );
        assert_eq!(parse_hex("b7000000"), Ok(vec![0xb7, 0, 0, 0]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        assert_eq!(parse_hex("   "), Ok(vec![]));
    }

    #[test]
    fn rejects_what_is_not_bytes() {
        for bad in [
            "exit",
            "b70",
            "0x",
            "0x0000000000000095",
            "zz",
            "mov %r0, 1",
            "-1",
        ] {
            assert!(parse_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dump_shows_offsets_and_ascii() {
        let d = hexdump(b"HELLO, WORLD!\n");
        assert!(
            d.starts_with("00000000  48 45 4c 4c 4f 2c 20 57  4f 52 4c 44 21 0a"),
            "{d}"
        );
        assert!(d.trim_end().ends_with("|HELLO, WORLD!.|"), "{d}");
        assert_eq!(to_hex(&[0, 0xab]), "00ab");
    }
}
