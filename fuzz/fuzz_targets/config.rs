//! The config loader: YAML text, then `--set` overrides (lines after a
//! NUL). Never panics, whatever the text; a config that validates also
//! prints (masked) as YAML and JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (yaml, sets) = text.split_once('\0').unwrap_or((text, ""));
    let overrides: Vec<String> = sets.lines().map(str::to_owned).collect();
    if let Ok(config) = shoal::config::from_yaml(yaml, &overrides) {
        if config.validate().is_ok() {
            let _ = config.to_masked_yaml();
            let _ = config.to_masked_json();
        }
    }
});
