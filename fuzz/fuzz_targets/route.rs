//! Route patterns and request paths. Input: pattern lines, a NUL, then
//! the path. Never panics; a passkey is a non-empty segment of the path;
//! a path made from the first pattern matches some route.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::protocol::http::route::{Route, Routes};

fuzz_target!(|data: &[u8]| {
    let (patterns, path) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"/announce"[..]),
    };
    let Ok(patterns) = std::str::from_utf8(patterns) else {
        return;
    };
    let lines: Vec<String> = patterns.lines().map(str::to_owned).collect();
    let half = lines.len() / 2;
    let Ok(routes) = Routes::new(&lines[..half], &lines[half..]) else {
        return;
    };
    match routes.match_path(path) {
        Route::Announce { passkey: Some(p) } | Route::Scrape { passkey: Some(p) } => {
            assert!(!p.is_empty() && !p.contains(&b'/'));
            let start = p.as_ptr() as usize - path.as_ptr() as usize;
            assert!(start + p.len() <= path.len());
        }
        _ => {}
    }
    if let Some(first) = lines.first() {
        // The pattern's own text, its `:passkey` segment filled in.
        let made: Vec<&str> = first
            .split('/')
            .map(|segment| {
                if segment == ":passkey" {
                    "k3y"
                } else {
                    segment
                }
            })
            .collect();
        let made = made.join("/");
        assert_ne!(
            routes.match_path(made.as_bytes()),
            Route::NotFound,
            "{first:?}"
        );
    }
});
