//! Plain decimal numbers, as request heads and query strings carry them.

/// Digits only, at least one, no sign, no overflow of `u64`.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"007"), Some(7));
        assert_eq!(parse_decimal(b"6881"), Some(6881));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"0x10",
            b"1.5",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_decimal(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
