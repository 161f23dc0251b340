//! The kernel's packet parser (`netprobe_ebpf::parse`, the code the XDP and TC programs run)
//! against an independent one (etherparse, walked as netprobe documents it:
//! `tests/common/reference.rs`): for every frame, the same flow (addresses, ports, transport,
//! VLAN tags, fragment and chain flags, IP length) or the same parse-error class of
//! `netprobe_agent_parse_errors_total`.
#![no_main]

#[path = "../../tests/common/reference.rs"]
mod reference;

libfuzzer_sys::fuzz_target!(|frame: &[u8]| {
    let want = reference::reference(frame);
    let got = reference::ours(frame);
    assert_eq!(got, want, "frame {frame:02x?}");
});
