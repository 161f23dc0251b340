//! The `k8s` section: where the Kubernetes API is, and how flow ends are named.

use std::{net::IpAddr, str::FromStr, time::Duration};

use serde::Deserialize;

use super::{ConfigError, de_duration};

/// Whether to name flow ends from the Kubernetes API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum K8sMode {
    /// Use the API when one is configured (in-cluster service account, `k8s.kubeconfig`,
    /// `$KUBECONFIG`, `~/.kube/config`); otherwise run standalone with a one-line notice.
    #[default]
    Auto,
    /// Require the API: refuse to start without one.
    Cluster,
    /// Never use it: flows are named by address.
    Standalone,
}

/// Kubernetes awareness.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct K8sConfig {
    /// `auto`, `cluster` or `standalone`. Default: `auto`.
    pub mode: K8sMode,
    /// A kubeconfig file to use instead of the in-cluster service account. Default: empty
    /// (in-cluster first, then `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: String,
    /// How long a deleted pod's IP still names it, so late packets are attributed. An IP
    /// reused by a new pod names the new pod at once. Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub delete_grace: Duration,
    /// Which namespaces' traffic is reported.
    pub namespaces: NamespaceFilter,
    /// Named address ranges outside the cluster: a peer inside one is named by the group
    /// (e.g. `{name: corp-vpn, cidrs: [10.8.0.0/16]}`) instead of `external`.
    pub cidr_groups: Vec<CidrGroup>,
    /// The cluster's own ranges (pod and service CIDRs): an address inside them that the index
    /// does not know is `unknown`, not `external`. Default: none.
    pub cluster_cidrs: Vec<String>,
}

impl Default for K8sConfig {
    fn default() -> Self {
        Self {
            mode: K8sMode::Auto,
            kubeconfig: String::new(),
            delete_grace: Duration::from_secs(30),
            namespaces: NamespaceFilter::default(),
            cidr_groups: Vec::new(),
            cluster_cidrs: Vec::new(),
        }
    }
}

/// Namespace include/exclude, by name pattern (`*` and `?` wildcards).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceFilter {
    /// When set, only flows with an end in one of these namespaces are reported, and only
    /// these namespaces are counted. Default: all.
    pub include: Vec<String>,
    /// Flows with an end in one of these namespaces are not reported, and these namespaces
    /// are not counted. Default: none.
    pub exclude: Vec<String>,
}

/// A named set of address ranges.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CidrGroup {
    /// The name flow ends inside these ranges get (as their workload name).
    pub name: String,
    /// Ranges, e.g. `10.8.0.0/16`, `2001:db8::/32`.
    pub cidrs: Vec<String>,
}

impl K8sConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.delete_grace > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "k8s.delete_grace",
                "must be at most 1h",
            ));
        }
        if self.mode == K8sMode::Standalone && !self.kubeconfig.is_empty() {
            return Err(ConfigError::invalid(
                "k8s.kubeconfig",
                "set, but k8s.mode is standalone",
            ));
        }
        for (key, list) in [
            ("k8s.namespaces.include", &self.namespaces.include),
            ("k8s.namespaces.exclude", &self.namespaces.exclude),
        ] {
            for (n, p) in list.iter().enumerate() {
                if p.is_empty() || p.len() > 253 || p.chars().any(char::is_whitespace) {
                    return Err(ConfigError::invalid(
                        &format!("{key}[{n}]"),
                        format!("{p:?} is not a namespace pattern"),
                    ));
                }
            }
        }
        for (n, g) in self.cidr_groups.iter().enumerate() {
            if g.name.is_empty() || g.name.len() > 63 {
                return Err(ConfigError::invalid(
                    &format!("k8s.cidr_groups[{n}].name"),
                    "must be 1 to 63 characters",
                ));
            }
            if g.cidrs.is_empty() {
                return Err(ConfigError::invalid(
                    &format!("k8s.cidr_groups[{n}].cidrs"),
                    "must list at least one range",
                ));
            }
            check_cidrs(&format!("k8s.cidr_groups[{n}].cidrs"), &g.cidrs)?;
        }
        check_cidrs("k8s.cluster_cidrs", &self.cluster_cidrs)
    }
}

fn check_cidrs(key: &str, list: &[String]) -> Result<(), ConfigError> {
    for (n, c) in list.iter().enumerate() {
        c.parse::<Cidr>()
            .map_err(|reason| ConfigError::invalid(&format!("{key}[{n}]"), reason))?;
    }
    Ok(())
}

/// An address range, e.g. `10.8.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR: expected ADDRESS/PREFIX"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR: {a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?} is not a CIDR: prefix must be 0..={max}"))?;
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    /// The prefix length: the larger, the more specific the range.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v) => (u128::from(v.to_bits()), 32u32),
            IpAddr::V6(v) => (v.to_bits(), 128u32),
        };
        let ((net, width), (x, w2)) = (bits(self.addr), bits(ip));
        if width != w2 {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (x >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.8.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.8.255.1")));
        assert!(!c.contains(ip("10.9.0.1")));
        assert!(!c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("ten/8".parse::<Cidr>().is_err());
    }
}
