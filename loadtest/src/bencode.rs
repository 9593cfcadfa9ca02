//! Minimal validating bencode reader: enough to check tracker answers
//! without building a tree. Values are returned as the byte ranges they
//! occupy; nesting depth is bounded so hostile input cannot overflow the
//! stack, and no input can make it panic.

/// Deeper nesting than any tracker answer needs.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

/// End (exclusive) of the value starting at `pos`.
pub fn skip(buf: &[u8], pos: usize) -> Result<usize, Invalid> {
    skip_depth(buf, pos, 0)
}

fn skip_depth(buf: &[u8], pos: usize, depth: usize) -> Result<usize, Invalid> {
    if depth > MAX_DEPTH {
        return Err(Invalid);
    }
    match *buf.get(pos).ok_or(Invalid)? {
        b'i' => {
            let end = find(buf, pos + 1, b'e')?;
            parse_int(&buf[pos + 1..end])?;
            Ok(end + 1)
        }
        b'l' => {
            let mut p = pos + 1;
            while *buf.get(p).ok_or(Invalid)? != b'e' {
                p = skip_depth(buf, p, depth + 1)?;
            }
            Ok(p + 1)
        }
        b'd' => {
            let mut p = pos + 1;
            while *buf.get(p).ok_or(Invalid)? != b'e' {
                let (_, after_key) = bytes_at(buf, p)?;
                p = skip_depth(buf, after_key, depth + 1)?;
            }
            Ok(p + 1)
        }
        b'0'..=b'9' => bytes_at(buf, pos).map(|(_, end)| end),
        _ => Err(Invalid),
    }
}

fn find(buf: &[u8], from: usize, byte: u8) -> Result<usize, Invalid> {
    buf.get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == byte))
        .map(|i| from + i)
        .ok_or(Invalid)
}

/// Integer body (between `i` and `e`): no leading zeros, no `-0`.
fn parse_int(digits: &[u8]) -> Result<i64, Invalid> {
    let (neg, d) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) || (d[0] == b'0' && (d.len() > 1 || neg)) {
        return Err(Invalid);
    }
    let mut v: i64 = 0;
    for &c in d {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(c - b'0')))
            .ok_or(Invalid)?;
    }
    Ok(if neg { -v } else { v })
}

/// Byte string at `pos`: its contents and the position after it.
fn bytes_at(buf: &[u8], pos: usize) -> Result<(&[u8], usize), Invalid> {
    let colon = find(buf, pos, b':')?;
    let digits = &buf[pos..colon];
    if digits.is_empty()
        || digits.len() > 10
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits[0] == b'0' && digits.len() > 1)
    {
        return Err(Invalid);
    }
    let len = digits
        .iter()
        .fold(0usize, |a, &c| a * 10 + usize::from(c - b'0'));
    let start = colon + 1;
    let end = start.checked_add(len).ok_or(Invalid)?;
    let s = buf.get(start..end).ok_or(Invalid)?;
    Ok((s, end))
}

/// A validated dictionary: the whole input must be exactly one dict.
#[derive(Clone, Copy, Debug)]
pub struct Dict<'a>(&'a [u8]);

impl<'a> Dict<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, Invalid> {
        if buf.first() != Some(&b'd') || skip(buf, 0)? != buf.len() {
            return Err(Invalid);
        }
        Ok(Dict(buf))
    }

    /// (key, raw value) pairs, in the order they appear.
    pub fn entries(&self) -> DictIter<'a> {
        DictIter {
            buf: self.0,
            pos: 1,
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<Value<'a>> {
        self.entries().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.entries().count()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().next().is_none()
    }
}

pub struct DictIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for DictIter<'a> {
    type Item = (&'a [u8], Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        // The dict was validated, so errors here only end the iteration.
        if self.buf.get(self.pos) == Some(&b'e') {
            return None;
        }
        let (key, vstart) = bytes_at(self.buf, self.pos).ok()?;
        let vend = skip(self.buf, vstart).ok()?;
        self.pos = vend;
        Some((key, Value(&self.buf[vstart..vend])))
    }
}

/// The raw bytes of one already validated value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value<'a>(pub &'a [u8]);

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self.0 {
            [b'i', body @ .., b'e'] => parse_int(body).ok(),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.0.first() {
            Some(b'0'..=b'9') => bytes_at(self.0, 0).ok().map(|(s, _)| s),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<Dict<'a>> {
        if self.0.first() == Some(&b'd') {
            Some(Dict(self.0))
        } else {
            None
        }
    }

    /// Elements of a list.
    pub fn as_list(&self) -> Option<impl Iterator<Item = Value<'a>>> {
        if self.0.first() != Some(&b'l') {
            return None;
        }
        let buf = self.0;
        let mut pos = 1;
        Some(std::iter::from_fn(move || {
            if buf.get(pos) == Some(&b'e') {
                return None;
            }
            let end = skip(buf, pos).ok()?;
            let v = Value(&buf[pos..end]);
            pos = end;
            Some(v)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_valid_dicts() {
        let d =
            Dict::parse(b"d8:intervali1800e5:peers6:abcdef4:listli1e3:abce1:dd1:xi-5eee").unwrap();
        assert_eq!(d.get(b"interval").and_then(|v| v.as_int()), Some(1800));
        assert_eq!(
            d.get(b"peers").and_then(|v| v.as_bytes()),
            Some(&b"abcdef"[..])
        );
        assert_eq!(
            d.get(b"list").and_then(|v| v.as_list()).map(|l| l.count()),
            Some(2)
        );
        let inner = d.get(b"d").and_then(|v| v.as_dict()).unwrap();
        assert_eq!(inner.get(b"x").and_then(|v| v.as_int()), Some(-5));
        assert_eq!(d.len(), 4);
        assert!(Dict::parse(b"de").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_bencode() {
        for bad in [
            &b""[..],
            b"d",
            b"d8:interval",
            b"d8:intervali18",
            b"d8:intervali1800ee_trailing",
            b"i5e",
            b"l1:ae",
            b"d3:keyi01ee",
            b"d3:keyi-0ee",
            b"d3:keyiee",
            b"d3:key5:abce",
            b"di1ei2ee",
            b"d3:key05:abcdee",
            b"d3:keyx1e",
            b"d1:ai99999999999999999999ee",
            b"d3:key99999999999:xe",
        ] {
            assert_eq!(
                Dict::parse(bad).err(),
                Some(Invalid),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Deep nesting is refused, not recursed into without bound.
        let mut deep = b"d1:a".to_vec();
        deep.extend(std::iter::repeat_n(b'l', 10_000));
        deep.extend(std::iter::repeat_n(b'e', 10_001));
        assert_eq!(Dict::parse(&deep).err(), Some(Invalid));
    }
}
