//! The kernel stage, the first of the pipeline: load the eBPF object, attach it to interfaces
//! as they come and go, and read its maps with batched syscalls. It imports no later stage:
//! the flow stage drives the reads and keeps what they find.
//!
//! `attach` owns the programs (and so the links: dropping it detaches everything); `reader`
//! reads the flow tables into a [`reader::FlowSink`]; `counts` reads the metric modules' maps
//! of per-flow counts; `table` is one kernel hash map as a reader uses it; `coverage` compares
//! what the programs saw per interface with the interfaces' own counters (`linkstats`);
//! `netlink` and `sys` are the thin wrappers over the kernel interfaces that aya 0.14 does not
//! cover.

pub mod attach;
pub mod btf;
pub mod counts;
pub mod coverage;
pub mod drops;
pub mod kernel;
pub mod links;
pub mod linkstats;
pub mod netlink;
pub mod pin;
pub mod reader;
pub mod sys;
pub mod table;

use aya::{Ebpf, EbpfLoader, maps::Map};
use netprobe_ebpf::{COUNTERS_MAP, FLOWS4_MAP, FLOWS6_MAP, skb_offsets};

/// The production object: XDP, TC ingress and TC egress programs, the flow table and counters.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe"));

/// The benchmark object: trivial XDP/TC programs and the per-CPU flow-table variant.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-bench"));

/// Loading or attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The kernel is older than the oldest line the programs are verified on.
    #[error(
        "kernel {release} is below the supported floor {}.{}: the programs are verified on {}.{} and later",
        kernel::FLOOR.0, kernel::FLOOR.1, kernel::FLOOR.0, kernel::FLOOR.1
    )]
    BelowFloor {
        /// The running kernel's release.
        release: String,
    },
    /// The maps could not be created.
    #[error("kernel {release}: creating the maps failed{hint}")]
    Maps {
        /// The running kernel's release.
        release: String,
        /// What to do about it, when known (starts with "; ").
        hint: &'static str,
        /// The cause (boxed: it is large, and this is the cold path).
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// The verifier rejected a program.
    #[error("kernel {release} rejected program {name} ({log})")]
    Verifier {
        /// The running kernel's release.
        release: String,
        /// Program name.
        name: &'static str,
        /// Where the verifier's log went.
        log: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be loaded into the kernel or attached.
    #[error("loading or attaching program {name} failed")]
    Program {
        /// Program name.
        name: &'static str,
        /// The cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map or program the object must contain is missing.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    /// A map of the object could not be opened for reading.
    #[error("opening map {name} failed")]
    Table {
        /// The map's name.
        name: &'static str,
        /// The cause.
        #[source]
        source: sys::SysError,
    },
}

/// Loads the production object with flow tables of `v4` and `v6` entries, and loads (but does
/// not attach) its packet programs. Refuses kernels below [`kernel::FLOOR`]; a verifier
/// rejection names the program and the file its log went to.
pub fn load(v4: u32, v6: u32) -> Result<Ebpf, EbpfError> {
    load_with(&Sizes::flows(v4, v6), None)
}

/// Table sizes of the object.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// IPv4 flows.
    pub flows4: u32,
    /// IPv6 flows.
    pub flows6: u32,
    /// Connections (their client-end index gets twice as many).
    pub conns: u32,
    /// DNS: the ports global (0: off, and its tables get one entry each) and the pending- and
    /// answered-query tables.
    pub dns: (u64, u32, u32),
}

impl Sizes {
    /// The capacity of every map the configuration sizes, by name (DNS off: its tables get
    /// one entry each).
    pub fn overrides(&self) -> std::collections::HashMap<&'static str, u32> {
        let (queries, stats) = match self.dns {
            (0, ..) => (1, 1),
            (_, q, s) => (q, s),
        };
        std::collections::HashMap::from([
            (FLOWS4_MAP, self.flows4),
            (FLOWS6_MAP, self.flows6),
            (netprobe_ebpf::CONNS_MAP, self.conns),
            (netprobe_ebpf::CONN_ENDS_MAP, 2 * self.conns),
            (netprobe_ebpf::dns::DNS_QUERIES_MAP, queries),
            (netprobe_ebpf::dns::DNS_STATS_MAP, stats),
        ])
    }

    /// These flow tables, the default connection and DNS tables.
    pub fn flows(flows4: u32, flows6: u32) -> Self {
        use netprobe_ebpf::dns;
        Self {
            flows4,
            flows6,
            conns: netprobe_ebpf::DEFAULT_CONNS_CAPACITY,
            dns: (
                dns::DEFAULT_DNS_PORTS,
                dns::DEFAULT_DNS_QUERIES_CAPACITY,
                dns::DEFAULT_DNS_STATS_CAPACITY,
            ),
        }
    }
}

/// As [`load`], with all table sizes, and the `sk_buff` offsets the drop program reads (set
/// as the object's globals; `None`: the drop program will not run).
pub fn load_with(sizes: &Sizes, skb: Option<&btf::SkbLayout>) -> Result<Ebpf, EbpfError> {
    load_pinned(sizes, skb, None)
}

/// The names of the object's shared maps (the ones pinned), leaked once: aya's loader keeps
/// `&str` names for the life of the builder.
fn pinned_maps(sizes: &Sizes) -> Vec<&'static str> {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            let overrides = sizes.overrides();
            pin::layout::shapes(OBJECT, |n| overrides.get(n).copied())
                .unwrap_or_default()
                .into_iter()
                .map(|s| &*Box::leak(s.name.into_boxed_str()))
                .collect()
        })
        .clone()
}

/// As [`load_with`], with the shared maps pinned in (or adopted from) `pins`: a pinned map
/// is reused as it is, so [`pin::PinDir::prepare`] must have checked them first.
pub fn load_pinned(
    sizes: &Sizes,
    skb: Option<&btf::SkbLayout>,
    pins: Option<&pin::PinDir>,
) -> Result<Ebpf, EbpfError> {
    let release = kernel::release();
    check_floor(&release)?;
    let version = kernel::Version::parse(&release);
    let offsets = skb.map_or([0; 4], |l| {
        [l.head, l.network_header, l.transport_header, l.protocol]
    });
    let mut loader = EbpfLoader::new();
    for (name, entries) in sizes.overrides() {
        loader.map_max_entries(name, entries);
    }
    if let Some(dir) = pins {
        for name in pinned_maps(sizes) {
            loader.map_pin_path(name, dir.map(name));
        }
    }
    loader.override_global(netprobe_ebpf::dns::DNS_PORTS_GLOBAL, &sizes.dns.0, true);
    for (name, value) in [
        skb_offsets::HEAD,
        skb_offsets::NETWORK_HEADER,
        skb_offsets::TRANSPORT_HEADER,
        skb_offsets::PROTOCOL,
    ]
    .into_iter()
    .zip(&offsets)
    {
        loader.override_global(name, value, true);
    }
    let mut ebpf = loader
        .load(OBJECT)
        .map_err(|source| {
            // Before 5.11 the kernel charges maps to RLIMIT_MEMLOCK (aya raises it, which
            // takes CAP_SYS_RESOURCE); later, to the memory cgroup.
            let old = version.is_some_and(|v| v < kernel::Version(5, 11));
            let hint = if old && is_permission(&source) {
                "; kernels before 5.11 charge maps to RLIMIT_MEMLOCK: grant CAP_SYS_RESOURCE or raise the limit"
            } else {
                ""
            };
            EbpfError::Maps {
                release: release.clone(),
                hint,
                source: Box::new(source),
            }
        })?;
    attach::load_programs(&mut ebpf).map_err(|e| verifier_error(e, &release))?;
    for (name, program) in ebpf.programs() {
        if let Some(n) = program
            .info()
            .ok()
            .and_then(|i| i.verified_instruction_count())
        {
            tracing::debug!(program = name, verified_instructions = n, "loaded");
        }
    }
    Ok(ebpf)
}

/// Refuses a kernel below [`kernel::FLOOR`] (an unparsable release is let through: the
/// verifier will say).
fn check_floor(release: &str) -> Result<(), EbpfError> {
    let floor = kernel::Version(kernel::FLOOR.0, kernel::FLOOR.1);
    if kernel::Version::parse(release).is_some_and(|v| v < floor) {
        return Err(EbpfError::BelowFloor {
            release: release.to_owned(),
        });
    }
    Ok(())
}

fn is_permission(e: &aya::EbpfError) -> bool {
    matches!(
        e,
        aya::EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. })
            if io_error.raw_os_error() == Some(libc::EPERM)
    )
}

/// A verifier rejection, with its log written to a file (it runs to thousands of lines: never
/// to the terminal); other errors as they are.
fn verifier_error(e: EbpfError, release: &str) -> EbpfError {
    let EbpfError::Program {
        name,
        source:
            aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            },
    } = e
    else {
        return e;
    };
    rejected(release, name, &verifier_log.to_string(), io_error)
}

/// The error for program `name` rejected with `log`, written to a file in the temporary
/// directory (or, if that fails, to debug logging).
fn rejected(release: &str, name: &'static str, log: &str, source: std::io::Error) -> EbpfError {
    let path = std::env::temp_dir().join(format!("otel-netprobe-verifier-{name}.log"));
    let log = match std::fs::write(&path, log) {
        Ok(()) => format!("the verifier's log is in {}", path.display()),
        Err(write) => {
            tracing::debug!(program = name, log, "the verifier's log");
            format!(
                "the verifier's log could not be written to {} ({write}); run with --log debug to see it",
                path.display()
            )
        }
    };
    EbpfError::Verifier {
        release: release.to_owned(),
        name,
        log,
        source,
    }
}

/// The maps the reader owns.
pub struct Maps {
    /// IPv4 flow table.
    pub flows4: aya::maps::MapData,
    /// IPv6 flow table.
    pub flows6: aya::maps::MapData,
    /// Per-CPU global counters.
    pub counters: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
}

/// Takes the (LRU) hash map `name` out of the object, for its reader.
pub fn take_hash_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::MapData, EbpfError> {
    match ebpf.take_map(name) {
        Some(Map::HashMap(m) | Map::LruHashMap(m)) => Ok(m),
        _ => Err(EbpfError::Missing(name)),
    }
}

/// Takes the flow tables and the counter array out of the object, for the reader.
pub fn take_maps(ebpf: &mut Ebpf) -> Result<Maps, EbpfError> {
    let Some(Map::HashMap(flows4)) = ebpf.take_map(FLOWS4_MAP) else {
        return Err(EbpfError::Missing("IPv4 flow table"));
    };
    let Some(Map::HashMap(flows6)) = ebpf.take_map(FLOWS6_MAP) else {
        return Err(EbpfError::Missing("IPv6 flow table"));
    };
    let Some(counters) = ebpf
        .take_map(COUNTERS_MAP)
        .and_then(|m| aya::maps::PerCpuArray::try_from(m).ok())
    else {
        return Err(EbpfError::Missing("counter array"));
    };
    Ok(Maps {
        flows4,
        flows6,
        counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_below_the_floor_is_named() {
        let e = check_floor("4.19.0-27-cloud-amd64").unwrap_err();
        assert_eq!(
            e.to_string(),
            "kernel 4.19.0-27-cloud-amd64 is below the supported floor 5.10: the programs are \
             verified on 5.10 and later"
        );
        assert!(check_floor("5.10.0-46-cloud-amd64").is_ok());
        assert!(check_floor("6.18.44").is_ok());
    }

    #[test]
    fn a_rejection_names_kernel_program_and_log_file() {
        let log = "0: (b7) r0 = 0\nBPF program is too large. Processed 1000001 insn\n";
        let e = rejected(
            "6.1.0-57-cloud-amd64",
            "netprobe_tc_ingress",
            log,
            std::io::Error::from_raw_os_error(libc::E2BIG),
        );
        let path = std::env::temp_dir().join("otel-netprobe-verifier-netprobe_tc_ingress.log");
        assert_eq!(
            e.to_string(),
            format!(
                "kernel 6.1.0-57-cloud-amd64 rejected program netprobe_tc_ingress (the verifier's \
                 log is in {})",
                path.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), log);
        let _ = std::fs::remove_file(path);
    }
}
