//! The configuration as `check-config` reads it (YAML text → `Config::from_yaml`: parse, then
//! validate): never a panic, and every refusal names a key — a dotted path under one of the
//! top-level sections, an unknown top-level key itself, or `.` for the document itself — and
//! says why.
#![no_main]

use otel_netprobe::config::{Config, ConfigError};

const SECTIONS: [&str; 8] = [
    "interfaces",
    "flows",
    "http",
    "otlp",
    "metrics",
    "k8s",
    "connections",
    "drops",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text) {
        Ok(cfg) => {
            // What was accepted stays accepted (the agent validates again after the flags).
            assert!(cfg.validate().is_ok(), "accepted, then refused: {text:?}");
        }
        Err(ConfigError::Invalid { key, reason }) => {
            assert!(!reason.trim().is_empty(), "no reason for `{key}`: {text:?}");
            let section = key.split(['.', '[']).next().unwrap_or_default();
            // An unknown top-level key is named as itself, dots and all (seeds
            // regression_unknown_top_level_key*: `flowflows` and `de(lete_gra.ce:isten`,
            // which this check once refused).
            let unknown_top_level = reason.starts_with(&format!("unknown field `{key}`"));
            assert!(
                key == "." || SECTIONS.contains(&section) || unknown_top_level,
                "the error names no key: `{key}`: {reason} (input {text:?})"
            );
        }
        Err(e) => panic!("unexpected error from text: {e}"),
    }
});
