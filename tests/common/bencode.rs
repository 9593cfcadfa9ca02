//! Reading bencoded answers in tests, with the load generator's validating
//! reader (`shoal_loadtest::bencode`), plus the strictness a tracker's own
//! tests want on top: every dictionary's keys sorted and unique (BEP 3).
//! The accessors panic with the key when a field is missing or of the wrong
//! type, so a test reads `v.int("complete")`.

pub use shoal_loadtest::bencode::{Dict, Value};

/// `body` as exactly one dictionary, with sorted, unique keys throughout.
pub fn parse(body: &[u8]) -> Result<Dict<'_>, String> {
    let dict = Dict::parse(body).map_err(|_| "not one valid dictionary".to_string())?;
    keys_sorted(Value(body))?;
    Ok(dict)
}

fn keys_sorted(v: Value<'_>) -> Result<(), String> {
    if let Some(dict) = v.as_dict() {
        let mut last: Option<&[u8]> = None;
        for (key, value) in dict.entries() {
            if last.is_some_and(|l| l >= key) {
                return Err(format!(
                    "unsorted or duplicate key {:?}",
                    String::from_utf8_lossy(key)
                ));
            }
            last = Some(key);
            keys_sorted(value)?;
        }
    } else if let Some(items) = v.as_list() {
        for item in items {
            keys_sorted(item)?;
        }
    }
    Ok(())
}

/// Typed fields of a dictionary; each panics when the field is absent or
/// of another type.
pub trait Fields<'a> {
    fn field(&self, key: impl AsRef<[u8]>) -> Value<'a>;

    fn int(&self, key: impl AsRef<[u8]>) -> i64 {
        let key = key.as_ref();
        let v = self.field(key);
        v.as_int()
            .unwrap_or_else(|| panic!("{}: expected an int, got {v:?}", lossy(key)))
    }

    fn bytes(&self, key: impl AsRef<[u8]>) -> &'a [u8] {
        let key = key.as_ref();
        let v = self.field(key);
        v.as_bytes()
            .unwrap_or_else(|| panic!("{}: expected bytes, got {v:?}", lossy(key)))
    }

    fn dict(&self, key: impl AsRef<[u8]>) -> Dict<'a> {
        let key = key.as_ref();
        let v = self.field(key);
        v.as_dict()
            .unwrap_or_else(|| panic!("{}: expected a dict, got {v:?}", lossy(key)))
    }

    /// A list whose elements are all dictionaries.
    fn dicts(&self, key: impl AsRef<[u8]>) -> Vec<Dict<'a>> {
        let key = key.as_ref();
        let v = self.field(key);
        let items = v
            .as_list()
            .unwrap_or_else(|| panic!("{}: expected a list, got {v:?}", lossy(key)));
        items
            .map(|item| {
                item.as_dict()
                    .unwrap_or_else(|| panic!("{}: expected dicts, got {item:?}", lossy(key)))
            })
            .collect()
    }
}

impl<'a> Fields<'a> for Dict<'a> {
    fn field(&self, key: impl AsRef<[u8]>) -> Value<'a> {
        let key = key.as_ref();
        self.get(key)
            .unwrap_or_else(|| panic!("{}: missing", lossy(key)))
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
