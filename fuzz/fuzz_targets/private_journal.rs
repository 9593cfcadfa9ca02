//! Private mode's journal payload (the accounting rows a file holds, after
//! its header and checksum). Never panics; what decodes encodes back to
//! the same batch, and its SQL for both dialects is built without panic
//! and carries every row.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::config::Dialect;
use shoal::private::batch::Batch;
use shoal::private::service::sql::writes;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = Batch::decode(data) else {
        return;
    };
    assert_eq!(Batch::decode(&batch.encode()).as_ref(), Ok(&batch));
    for dialect in [Dialect::MySql, Dialect::Postgres] {
        let statements = writes(dialect, &batch, 4096);
        assert_eq!(statements.is_empty(), batch.is_empty());
        for s in &statements {
            // Values are numbers, hex and formatted addresses only: a
            // statement never holds a second one.
            assert!(!s.contains(';'), "{s}");
        }
    }
});
