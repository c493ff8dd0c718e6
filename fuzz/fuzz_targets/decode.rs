//! Decoder: first byte picks the link type and how the frame was cut, the
//! rest is the frame (see `tidewatch_fuzz::harness::decode_input`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidewatch_fuzz::decode_input(data));
