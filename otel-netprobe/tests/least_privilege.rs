//! Least privilege: the binary, as user nobody with exactly the capabilities the README names
//! (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON; every other one dropped with `setpriv`), attaches and
//! counts exactly (flows and drops); with any one of them missing it refuses in one line that
//! names it.

mod common;

use std::process::Command;

use common::{
    Netns, NodeLab,
    addr::PODS,
    backends::free_port,
    binary::{self, Agent, sample},
    traffic, unique,
};

const CAPS: [&str; 3] = ["bpf", "net_admin", "perfmon"];

/// `otel-netprobe ARGS` as nobody, with only `caps` (inheritable, ambient and bounding sets).
fn with_caps(caps: &[&str], args: &[&str]) -> Command {
    let set: String = caps.iter().flat_map(|c| [",+", c]).collect();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps=-all{set}"),
        &format!("--ambient-caps=-all{set}"),
        &format!("--bounding-set=-all{set}"),
    ])
    .arg(binary::path())
    .args(args);
    binary::clean_env(&mut cmd);
    cmd
}

/// The effective capability set of process `pid`.
fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff");
    u64::from_str_radix(hex.trim(), 16).expect("hex")
}

#[test]
fn the_named_capabilities_suffice_and_count_exactly() {
    common::require_root();
    let lab = NodeLab::new("caps");
    let listen = format!("127.0.0.1:{}", free_port());
    let cmd = with_caps(&CAPS, &["run", "--listen", &listen]);
    let mut agent = Agent::start(&lab.node, cmd, listen.parse().expect("addr"));
    agent.wait_metrics("4 interfaces at TC", |m| {
        sample(m, "netprobe_agent_interfaces{hook=\"tc\"}") == Some(4.0)
    });
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39), and nothing else.
    assert_eq!(cap_eff(agent.pid()), 1 << 12 | 1 << 38 | 1 << 39);
    traffic::udp(
        &lab.pods[0],
        &format!("{}:40170", PODS[0]),
        &lab.pods[1],
        &format!("{}:7070", PODS[1]),
        10,
        200,
    );
    let series = format!(
        "{{source_address=\"{}\",destination_address=\"{}\",destination_port=\"7070\",network_transport=\"udp\",network_type=\"ipv4\",netprobe_origin=\"outside\"}}",
        PODS[0], PODS[1]
    );
    let packets = format!("netprobe_flow_packets_total{series}");
    let m = agent.wait_metrics("10 packets", |m| {
        sample(m, &packets).is_some_and(|n| n >= 10.0)
    });
    assert_eq!(sample(&m, &packets), Some(10.0));
    assert_eq!(
        sample(&m, &format!("netprobe_flow_bytes_total{series}")),
        Some(2280.0)
    );
    assert_eq!(sample(&m, "netprobe_agent_attach_errors_total"), Some(0.0));
    // The drop program (a tracing program: CAP_PERFMON) loads too: datagrams to a closed
    // port are each one drop on their flow, whatever the kernel calls the reason.
    traffic::udp_send(
        &lab.pods[0],
        &format!("{}:40171", PODS[0]),
        &format!("{}:7071", PODS[1]),
        4,
        100,
    );
    let drops = format!(
        "netprobe_packet_drops_total{{source_address=\"{}\",destination_address=\"{}\",destination_port=\"7071\",",
        PODS[0], PODS[1]
    );
    let dropped = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with(&drops))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum()
    };
    let m = agent.wait_metrics("4 drops", |m| dropped(m) >= 4);
    assert_eq!(dropped(&m), 4, "{m}");
    assert!(
        m.lines().any(
            |l| l.starts_with("netprobe_agent_kernel_feature{feature=\"drops\"")
                && l.ends_with(" 1")
        ),
        "{m}"
    );
    assert!(agent.terminate().success(), "{}", agent.log());
}

#[test]
fn each_missing_capability_is_named_in_one_line() {
    common::require_root();
    for missing in CAPS {
        let caps: Vec<&str> = CAPS.into_iter().filter(|c| *c != missing).collect();
        let ns = Netns::new(&unique("nocap"));
        ns.ip("link add va type veth peer name vb");
        let out = binary::run_to_end(&ns, with_caps(&caps, &["run", "--listen", "127.0.0.1:0"]));
        assert!(!out.status.success(), "without {missing}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        let want = format!(
            "otel-netprobe: missing capability CAP_{}",
            missing.to_uppercase()
        );
        assert!(
            lines.len() == 1 && lines[0].starts_with(&want),
            "without {missing}: {err}"
        );
    }
}
