//! `fixes.yaml` text through `FixDocument::parse` and its rewrite: never a panic, and a rewrite
//! loses no entry. The checks are `checks/fixes_yaml.rs`, which the stable test suite replays
//! over `corpus/fixes_yaml/`.
#![no_main]

#[path = "../checks/fixes_yaml.rs"]
mod fixes_yaml;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fixes_yaml::check(data));
