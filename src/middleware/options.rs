//! What every configured hook's builder needs: its options read with the
//! failing field named, and the maker of each shard's instance.

use super::hook::Hook;
use std::sync::Arc;

/// Makes one shard's instance of a configured hook.
pub type Maker = Arc<dyn Fn(usize) -> Box<dyn Hook> + Send + Sync>;

/// Reads a hook's options into `T`; a missing or wrong field is named.
pub fn parse_options<T: serde::de::DeserializeOwned>(
    options: &serde_yaml::Value,
) -> Result<T, String> {
    let options = if options.is_null() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        options.clone()
    };
    serde_path_to_error::deserialize(options).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            message
        } else {
            format!("{path}: {message}")
        }
    })
}
