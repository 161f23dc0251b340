//! The names `netprobe.icmp.type` and `netprobe.icmp.code` carry: one vocabulary for ICMP and
//! ICMPv6, so a dashboard never needs two numbering schemes (port unreachable is ICMP 3/3 and
//! ICMPv6 1/4: both `destination_unreachable` / `port_unreachable`). The numbers are in the
//! README's table; a number without a name here is `type_<n>` / `code_<n>`.

/// The (type, code) names of an ICMP (`version` 4) or ICMPv6 (6) error.
pub fn names(version: u8, icmp_type: u8, code: u8) -> (String, String) {
    let (t, c) = if version == 6 {
        v6(icmp_type, code)
    } else {
        v4(icmp_type, code)
    };
    (
        t.map_or_else(|| format!("type_{icmp_type}"), str::to_owned),
        c.map_or_else(|| format!("code_{code}"), str::to_owned),
    )
}

const UNREACHABLE: &str = "destination_unreachable";
const TIME_EXCEEDED: &str = "time_exceeded";
const PARAMETER_PROBLEM: &str = "parameter_problem";

fn v4(icmp_type: u8, code: u8) -> (Option<&'static str>, Option<&'static str>) {
    match icmp_type {
        3 => (
            Some(UNREACHABLE),
            match code {
                0 => Some("net_unreachable"),
                1 => Some("host_unreachable"),
                2 => Some("protocol_unreachable"),
                3 => Some("port_unreachable"),
                4 => Some("fragmentation_needed"),
                5 => Some("source_route_failed"),
                6 => Some("net_unknown"),
                7 => Some("host_unknown"),
                8 => Some("source_host_isolated"),
                9 => Some("net_prohibited"),
                10 => Some("host_prohibited"),
                11 => Some("net_unreachable_for_tos"),
                12 => Some("host_unreachable_for_tos"),
                13 => Some("communication_prohibited"),
                14 => Some("host_precedence_violation"),
                15 => Some("precedence_cutoff"),
                _ => None,
            },
        ),
        11 => (Some(TIME_EXCEEDED), time_exceeded(code)),
        12 => (
            Some(PARAMETER_PROBLEM),
            match code {
                0 => Some("erroneous_header"),
                1 => Some("missing_required_option"),
                2 => Some("bad_length"),
                _ => None,
            },
        ),
        _ => (None, None),
    }
}

fn v6(icmp_type: u8, code: u8) -> (Option<&'static str>, Option<&'static str>) {
    match icmp_type {
        1 => (
            Some(UNREACHABLE),
            match code {
                // "No route to destination": ICMP's net unreachable.
                0 => Some("net_unreachable"),
                1 => Some("communication_prohibited"),
                2 => Some("beyond_scope"),
                // "Address unreachable": ICMP's host unreachable.
                3 => Some("host_unreachable"),
                4 => Some("port_unreachable"),
                5 => Some("source_policy_failed"),
                6 => Some("reject_route"),
                7 => Some("source_routing_header_error"),
                8 => Some("headers_too_long"),
                _ => None,
            },
        ),
        // ICMP says it with destination unreachable / fragmentation needed.
        2 => (
            Some("packet_too_big"),
            (code == 0).then_some("fragmentation_needed"),
        ),
        3 => (Some(TIME_EXCEEDED), time_exceeded(code)),
        4 => (
            Some(PARAMETER_PROBLEM),
            match code {
                0 => Some("erroneous_header"),
                1 => Some("unrecognized_next_header"),
                2 => Some("unrecognized_option"),
                3 => Some("incomplete_header_chain"),
                _ => None,
            },
        ),
        _ => (None, None),
    }
}

/// Time exceeded: the same two codes in both (the hop limit is IPv6's TTL).
fn time_exceeded(code: u8) -> Option<&'static str> {
    match code {
        0 => Some("ttl_exceeded"),
        1 => Some("reassembly_timeout"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    fn n(v: u8, t: u8, c: u8) -> (String, String) {
        names(v, t, c)
    }

    #[test]
    fn one_vocabulary_for_both_versions() {
        let port = (
            "destination_unreachable".to_owned(),
            "port_unreachable".to_owned(),
        );
        assert_eq!(n(4, 3, 3), port);
        assert_eq!(n(6, 1, 4), port);
        assert_eq!(n(4, 3, 1), n(6, 1, 3));
        assert_eq!(n(4, 11, 0), n(6, 3, 0));
        assert_eq!(n(4, 11, 0).1, "ttl_exceeded");
        assert_eq!(
            n(6, 2, 0),
            ("packet_too_big".into(), "fragmentation_needed".into())
        );
        assert_eq!(n(4, 3, 4).1, "fragmentation_needed");
        assert_eq!(
            n(4, 3, 99),
            ("destination_unreachable".into(), "code_99".into())
        );
        assert_eq!(n(6, 200, 1), ("type_200".into(), "code_1".into()));
    }
}
