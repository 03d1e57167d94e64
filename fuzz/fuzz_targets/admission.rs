//! An AdmissionReview body through the webhook's `/mutate` (decode, decide, encode): never a
//! panic, always a well-formed answer. The checks are `checks/admission.rs`, which the stable
//! test suite replays over `corpus/admission/`.
#![no_main]

#[path = "../checks/admission.rs"]
mod admission;

libfuzzer_sys::fuzz_target!(|data: &[u8]| admission::check(data));
