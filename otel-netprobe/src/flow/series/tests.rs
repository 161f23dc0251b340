use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};

use super::*;
use crate::config::flow_attr as attr;

/// A UDP flow from 10.0.0.`src`:40000 to 10.0.0.100:`dport` of `bytes` bytes in one packet.
pub(crate) fn flow(src: u8, dport: u16, bytes: u64) -> FlowView {
    let key = FlowKey {
        src_addr: [u32::from_ne_bytes([10, 0, 0, src]), 0, 0, 0],
        dst_addr: [u32::from_ne_bytes([10, 0, 0, 100]), 0, 0, 0],
        src_port: 40000u16.to_be(),
        dst_port: dport.to_be(),
        protocol: 17,
        ip_version: 4,
        pad: [0; 2],
    };
    let mut b = [0; SIZE_BUCKETS];
    b[5] = 1;
    FlowView::new(&key, bytes, b, 0, (0, 0))
}

/// Each series' first label value and its bytes.
fn bytes(b: &mut Budget, flows: &[FlowView]) -> (SeriesSet, Vec<(String, u64)>) {
    let naming = Naming::standalone();
    let set = b.build(&Named::new(flows, &naming, false));
    let sums = set.sums(flows, |f| f.bytes);
    let rows = set
        .series
        .iter()
        .zip(sums)
        .map(|(a, v)| (a[0].1.clone(), v))
        .collect();
    (set, rows)
}

#[test]
fn over_budget_goes_to_one_overflow_series_and_admission_is_sticky() {
    let mut b = Budget::new(FlowAttr::parse_all(FlowAttr::STANDALONE), 2);
    let flows = vec![
        flow(1, 53, 100),
        flow(2, 53, 300),
        flow(3, 53, 200),
        flow(4, 53, 50),
    ];
    let (set, rows) = bytes(&mut b, &flows);
    // The two busiest sets got series; the other two add up in the overflow series, last.
    assert_eq!(
        rows,
        [
            ("10.0.0.2".into(), 300),
            ("10.0.0.3".into(), 200),
            ("true".into(), 150)
        ]
    );
    assert_eq!(set.series[2][0].0, OVERFLOW);
    assert_eq!(set.overflow_flows, 2);
    assert_eq!(set.sums(&flows, |f| f.packets), [1, 1, 2]);
    // A newcomer busier than all keeps to overflow: admitted sets stay.
    let mut more = flows.clone();
    more.push(flow(5, 53, 10_000));
    let (_, rows) = bytes(&mut b, &more);
    assert_eq!(rows[2], ("true".into(), 10_150));
    // When an admitted set's flows are gone, its place goes to the busiest newcomer.
    let fewer: Vec<FlowView> = more.into_iter().filter(|f| f.bytes != 300).collect();
    let (_, rows) = bytes(&mut b, &fewer);
    assert!(rows.contains(&("10.0.0.5".into(), 10_000)), "{rows:?}");
}

#[test]
fn fewer_attributes_fewer_series() {
    let mut b = Budget::new(
        vec![FlowAttr::DestinationAddress, FlowAttr::ServerPort],
        100,
    );
    let flows = [flow(1, 53, 100), flow(2, 53, 300), flow(3, 80, 200)];
    let (set, rows) = bytes(&mut b, &flows);
    assert_eq!(set.series.len(), 2);
    assert_eq!(
        &set.series[0][..],
        [
            (attr::DESTINATION_ADDRESS, "10.0.0.100".to_owned()),
            (attr::DESTINATION_PORT, "53".to_owned()),
            (attr::ORIGIN, "outside".to_owned())
        ]
    );
    assert_eq!(rows[0].1, 400);
    assert_eq!(set.overflow_flows, 0);
    assert_eq!(set.of_flow, [0, 0, 1]);
}

#[test]
fn admitted_sets_keep_their_attributes() {
    let mut b = Budget::new(FlowAttr::parse_all(FlowAttr::STANDALONE), 2);
    let naming = Naming::standalone();
    let flows = vec![flow(1, 53, 300), flow(2, 53, 200), flow(3, 53, 100)];
    let first = b.build(&Named::new(&flows, &naming, false));
    let again = b.build(&Named::new(&flows, &naming, false));
    // The same sets, not new copies: labels are formatted once, on admission, and what a
    // renderer kept of them stays.
    assert!(Attrs::same(&first.series[0], &again.series[0]));
    assert!(Attrs::same(&first.series[2], &again.series[2]), "overflow");
    let rendered = first.series[0].memo(0, |l| l[0].1.as_bytes().to_vec());
    assert_eq!(rendered, b"10.0.0.1");
    assert_eq!(
        again.series[0].memo(0, |_| unreachable!("kept")),
        b"10.0.0.1"
    );
    // 10.0.0.1 leaves: 10.0.0.3 takes its place.
    let rest = [flow(2, 53, 200), flow(3, 53, 100)];
    let set = b.build(&Named::new(&rest, &naming, false));
    assert_eq!(set.series[1][0].1, "10.0.0.3");
}
