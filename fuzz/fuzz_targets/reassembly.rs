//! See `tidewatch_fuzz::harness::reassembly`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidewatch_fuzz::reassembly(data));
