//! Issue 14, section 5: `perfstream report --from --to` refuses a range it cannot read before
//! it connects anywhere (the report over a range is tested in
//! `crates/perfstream-store/tests/report_range.rs`).

use std::process::{Command, Output};

fn report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perfstream"))
        .arg("report")
        .args(args)
        // Nowhere to connect: every case below must fail before trying.
        .env(
            "PERFSTREAM_POSTGRES__URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bad_or_backwards_range_fails_before_connecting() {
    let o = report(&["--from", "1h"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--from") && stderr(&o).contains("-1h"),
        "{}",
        stderr(&o)
    );

    let o = report(&[
        "--from",
        "2026-11-30T12:00:00Z",
        "--to",
        "2026-11-30T11:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2026-11-30T12:00:00Z is not before its end 2026-11-30T11:00:00Z"),
        "{}",
        stderr(&o)
    );

    let o = report(&["--from", "-1h", "--to", "-2h"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not before"), "{}", stderr(&o));

    let o = report(&["--to", "yesterday"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--to") && stderr(&o).contains("RFC 3339"),
        "{}",
        stderr(&o)
    );

    // --since is --from's shorthand: both at once is a usage error.
    let o = report(&["--from", "-1h", "--since", "2h"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
