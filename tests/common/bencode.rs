//! A small bencode decoder for checking answers (strict: rejects trailing
//! bytes, unsorted or duplicate dictionary keys, leading zeros).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }
    pub fn int(&self, key: &str) -> i64 {
        match self.get(key) {
            Some(Value::Int(i)) => *i,
            other => panic!("{key}: expected an int, got {other:?}"),
        }
    }
    pub fn bytes(&self, key: &str) -> &[u8] {
        match self.get(key) {
            Some(Value::Bytes(b)) => b,
            other => panic!("{key}: expected bytes, got {other:?}"),
        }
    }
    pub fn list(&self, key: &str) -> &[Value] {
        match self.get(key) {
            Some(Value::List(l)) => l,
            other => panic!("{key}: expected a list, got {other:?}"),
        }
    }
}

pub fn decode(input: &[u8]) -> Result<Value, String> {
    let (v, rest) = value(input)?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(v)
}

fn value(input: &[u8]) -> Result<(Value, &[u8]), String> {
    match input.first() {
        Some(b'i') => {
            let end = input
                .iter()
                .position(|&b| b == b'e')
                .ok_or("unterminated int")?;
            let text = std::str::from_utf8(&input[1..end]).map_err(|e| e.to_string())?;
            if text.is_empty()
                || (text.starts_with('0') && text.len() > 1)
                || text.starts_with("-0")
            {
                return Err(format!("bad int {text}"));
            }
            Ok((
                Value::Int(text.parse().map_err(|_| format!("bad int {text}"))?),
                &input[end + 1..],
            ))
        }
        Some(b'l') => {
            let mut rest = &input[1..];
            let mut items = Vec::new();
            while rest.first() != Some(&b'e') {
                let (v, r) = value(rest)?;
                items.push(v);
                rest = r;
            }
            Ok((Value::List(items), &rest[1..]))
        }
        Some(b'd') => {
            let mut rest = &input[1..];
            let mut map = BTreeMap::new();
            let mut last: Option<Vec<u8>> = None;
            while rest.first() != Some(&b'e') {
                let (k, r) = value(rest)?;
                let Value::Bytes(k) = k else {
                    return Err("non-string key".into());
                };
                if last.as_ref().is_some_and(|l| *l >= k) {
                    return Err(format!(
                        "unsorted or duplicate key {:?}",
                        String::from_utf8_lossy(&k)
                    ));
                }
                let (v, r) = value(r)?;
                last = Some(k.clone());
                map.insert(k, v);
                rest = r;
            }
            Ok((Value::Dict(map), &rest[1..]))
        }
        Some(b'0'..=b'9') => {
            let colon = input.iter().position(|&b| b == b':').ok_or("no colon")?;
            let len: usize = std::str::from_utf8(&input[..colon])
                .unwrap()
                .parse()
                .map_err(|_| "bad length")?;
            let start = colon + 1;
            let bytes = input.get(start..start + len).ok_or("short string")?;
            Ok((Value::Bytes(bytes.to_vec()), &input[start + len..]))
        }
        _ => Err("unexpected byte".into()),
    }
}
