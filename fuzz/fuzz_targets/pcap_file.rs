//! Capture files: the input written to a file on tmpfs, read through
//! `PcapFileSource` and the engine (see `tidewatch_fuzz::harness::pcap_file`).
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static PATH: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let path = PATH.get_or_init(|| tidewatch_fuzz::scratch_file("input.pcap"));
    tidewatch_fuzz::pcap_file(data, path);
});
