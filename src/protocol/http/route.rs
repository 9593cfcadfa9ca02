//! Configurable routes (Chihaya's `announce_routes` / `scrape_routes`):
//! which request paths are announces and scrapes, and where a passkey sits.

/// The only parameter a pattern may hold.
const PASSKEY: &str = ":passkey";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Matched byte for byte (paths are compared as sent, not decoded).
    Literal(Box<[u8]>),
    /// Any non-empty segment, reported as the passkey.
    Passkey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Announce,
    Scrape,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    kind: Kind,
    segments: Box<[Segment]>,
}

/// Compiled route patterns, announce patterns first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    patterns: Box<[Pattern]>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Announce { passkey: Option<&'a [u8]> },
    Scrape { passkey: Option<&'a [u8]> },
    NotFound,
}

impl Routes {
    /// Compiles patterns like "/announce" or "/:passkey/announce":
    /// '/'-separated segments, each literal or `:passkey` (at most once).
    /// A trailing '/' is kept as an empty last segment, so "/announce/"
    /// matches only "/announce/". Errors name the pattern and the problem.
    pub fn new(announce: &[String], scrape: &[String]) -> Result<Routes, String> {
        let announce = announce.iter().map(|p| compile(Kind::Announce, p));
        let scrape = scrape.iter().map(|p| compile(Kind::Scrape, p));
        let patterns = announce.chain(scrape).collect::<Result<_, _>>()?;
        Ok(Routes { patterns })
    }

    /// The route of a request path (without the query). The first matching
    /// pattern wins, announce patterns before scrape ones.
    pub fn match_path<'a>(&self, path: &'a [u8]) -> Route<'a> {
        for pattern in self.patterns.iter() {
            if let Some(passkey) = pattern.match_path(path) {
                return match pattern.kind {
                    Kind::Announce => Route::Announce { passkey },
                    Kind::Scrape => Route::Scrape { passkey },
                };
            }
        }
        Route::NotFound
    }
}

fn compile(kind: Kind, pattern: &str) -> Result<Pattern, String> {
    let fail = |why: &str| Err(format!("route {pattern:?}: {why}"));
    let Some(rest) = pattern.strip_prefix('/') else {
        return fail("must start with '/'");
    };
    if pattern.contains(['?', '#']) {
        // Paths are cut at '?' before matching: such a pattern never matches.
        return fail("must not contain '?' or '#'");
    }
    let count = rest.split('/').count();
    let mut segments = Vec::with_capacity(count);
    for (index, text) in rest.split('/').enumerate() {
        // Only the last segment may be empty: "/" and "/announce/" end in
        // a slash, "//" anywhere is a mistake.
        if text.is_empty() && index + 1 != count {
            return fail("empty segment (\"//\")");
        }
        let segment = if !text.starts_with(':') {
            Segment::Literal(text.as_bytes().into())
        } else if text != PASSKEY {
            return fail(&format!("unknown parameter {text:?} (only {PASSKEY:?})"));
        } else if segments.contains(&Segment::Passkey) {
            return fail("more than one :passkey");
        } else {
            Segment::Passkey
        };
        segments.push(segment);
    }
    Ok(Pattern {
        kind,
        segments: segments.into(),
    })
}

impl Pattern {
    /// `Some(passkey)` if `path` matches; no allocation.
    fn match_path<'a>(&self, path: &'a [u8]) -> Option<Option<&'a [u8]>> {
        let mut parts = path.strip_prefix(b"/")?.split(|&b| b == b'/');
        let mut passkey = None;
        for segment in self.segments.iter() {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) if **literal == *part => {}
                Segment::Passkey if !part.is_empty() => passkey = Some(part),
                _ => return None,
            }
        }
        // Every segment of the path must be used: "/announce/x" is not "/announce".
        parts.next().is_none().then_some(passkey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| p.to_string()).collect()
    }

    fn routes(announce: &[&str], scrape: &[&str]) -> Routes {
        Routes::new(&strings(announce), &strings(scrape)).expect("valid patterns")
    }

    fn error(pattern: &str) -> String {
        Routes::new(&strings(&[pattern]), &[]).expect_err("invalid pattern")
    }

    fn announce(passkey: Option<&[u8]>) -> Route<'_> {
        Route::Announce { passkey }
    }

    fn scrape(passkey: Option<&[u8]>) -> Route<'_> {
        Route::Scrape { passkey }
    }

    #[test]
    fn default_routes() {
        let r = routes(&["/announce"], &["/scrape"]);
        assert_eq!(r.match_path(b"/announce"), announce(None));
        assert_eq!(r.match_path(b"/scrape"), scrape(None));
        assert_eq!(r.match_path(b"/"), Route::NotFound);
        assert_eq!(r.match_path(b""), Route::NotFound);
        assert_eq!(r.match_path(b"/favicon.ico"), Route::NotFound);
        assert_eq!(r.match_path(b"announce"), Route::NotFound);
    }

    #[test]
    fn matching_is_exact() {
        let r = routes(&["/announce"], &[]);
        for path in [
            &b"/announce/"[..],
            b"/announce/x",
            b"/announcex",
            b"/Announce",
            b"//announce",
            b"/x/announce",
            b"/announce%2F",
            b"/ announce",
        ] {
            assert_eq!(
                r.match_path(path),
                Route::NotFound,
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn trailing_slash_only_when_the_pattern_has_it() {
        let r = routes(&["/announce/"], &["/"]);
        assert_eq!(r.match_path(b"/announce/"), announce(None));
        assert_eq!(r.match_path(b"/announce"), Route::NotFound);
        assert_eq!(r.match_path(b"/announce//"), Route::NotFound);
        assert_eq!(r.match_path(b"/"), scrape(None));
        assert_eq!(r.match_path(b"//"), Route::NotFound);
    }

    #[test]
    fn passkey_first() {
        let r = routes(&["/:passkey/announce"], &["/:passkey/scrape"]);
        assert_eq!(
            r.match_path(b"/abc123/announce"),
            announce(Some(&b"abc123"[..]))
        );
        assert_eq!(
            r.match_path(b"/abc123/scrape"),
            scrape(Some(&b"abc123"[..]))
        );
        assert_eq!(r.match_path(b"//announce"), Route::NotFound);
        assert_eq!(r.match_path(b"/announce"), Route::NotFound);
        assert_eq!(r.match_path(b"/a/b/announce"), Route::NotFound);
        assert_eq!(r.match_path(b"/abc/announce/"), Route::NotFound);
    }

    #[test]
    fn passkey_last_and_middle() {
        let r = routes(&["/announce/:passkey", "/t/:passkey/a"], &[]);
        assert_eq!(
            r.match_path(b"/announce/k%20y"),
            announce(Some(&b"k%20y"[..]))
        );
        assert_eq!(r.match_path(b"/announce/"), Route::NotFound);
        assert_eq!(r.match_path(b"/t/key/a"), announce(Some(&b"key"[..])));
        assert_eq!(r.match_path(b"/t//a"), Route::NotFound);
    }

    #[test]
    fn passkey_segment_is_any_bytes() {
        let r = routes(&["/:passkey"], &[]);
        assert_eq!(
            r.match_path(b"/\xff\x00:x"),
            announce(Some(&b"\xff\x00:x"[..]))
        );
        assert_eq!(r.match_path(b"/"), Route::NotFound);
    }

    #[test]
    fn several_patterns_first_wins_announce_before_scrape() {
        let r = routes(
            &["/announce", "/:passkey/announce"],
            &["/:passkey/announce", "/scrape"],
        );
        assert_eq!(r.match_path(b"/announce"), announce(None));
        assert_eq!(r.match_path(b"/k/announce"), announce(Some(&b"k"[..])));
        assert_eq!(r.match_path(b"/scrape"), scrape(None));
        // A literal pattern before a passkey one takes its paths.
        let r = routes(&["/:passkey/announce", "/x/announce"], &[]);
        assert_eq!(r.match_path(b"/x/announce"), announce(Some(&b"x"[..])));
        let r = routes(&[], &["/x", "/:passkey"]);
        assert_eq!(r.match_path(b"/x"), scrape(None));
        assert_eq!(r.match_path(b"/y"), scrape(Some(&b"y"[..])));
    }

    #[test]
    fn no_patterns_match_nothing() {
        let r = routes(&[], &[]);
        assert_eq!(r.match_path(b"/announce"), Route::NotFound);
        assert_eq!(r.match_path(b"/"), Route::NotFound);
    }

    #[test]
    fn invalid_patterns() {
        assert!(error("announce").contains("must start with '/'"));
        assert!(error("").contains("must start with '/'"));
        assert!(error("//announce").contains("empty segment"));
        assert!(error("/a//b").contains("empty segment"));
        assert!(error("/announce//").contains("empty segment"));
        assert!(error("//").contains("empty segment"));
        assert!(error("/:key/announce").contains("unknown parameter \":key\""));
        assert!(error("/:/announce").contains("unknown parameter"));
        assert!(error("/:passkeys").contains("unknown parameter"));
        assert!(error("/:passkey/:passkey").contains("more than one :passkey"));
        assert!(error("/:passkey/a/:passkey").contains("more than one :passkey"));
        assert!(error("/announce?x").contains("'?'"));
        assert!(error("/announce#x").contains("'#'"));
    }

    #[test]
    fn errors_name_the_pattern_and_scrape_patterns_are_checked() {
        let err = Routes::new(&strings(&["/announce"]), &strings(&["scrape"])).unwrap_err();
        assert!(err.contains("\"scrape\""), "{err}");
        let err = error("/:user/announce");
        assert!(err.starts_with("route \"/:user/announce\""), "{err}");
    }

    #[test]
    fn colon_inside_a_literal_is_literal() {
        let r = routes(&["/a:passkey"], &[]);
        assert_eq!(r.match_path(b"/a:passkey"), announce(None));
        assert_eq!(r.match_path(b"/axyz"), Route::NotFound);
    }
}
