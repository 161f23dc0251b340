//! The reader's view of the flow tables: flows tracked, the kernel table's entries, capacity,
//! fill and memory, how long the last read took, and the connection table's entries and
//! capacity.

use super::{Cycle, Family, Module, Value, catalogue::metric};

metric!(
    AGENT_FLOWS_TRACKED,
    "netprobe.agent.flows.tracked",
    "{flow}",
    "netprobe_agent_flows_tracked",
    Gauge,
    own [],
    "Flows tracked in user space."
);

metric!(
    AGENT_FLOW_TABLE_ENTRIES,
    "netprobe.agent.flow_table.entries",
    "{flow}",
    "netprobe_agent_flow_table_entries",
    Gauge,
    own [],
    "Entries in the kernel flow table."
);

metric!(
    AGENT_FLOW_TABLE_CAPACITY,
    "netprobe.agent.flow_table.capacity",
    "{flow}",
    "netprobe_agent_flow_table_capacity",
    Gauge,
    own [],
    "Capacity of the kernel flow table."
);

metric!(
    AGENT_FLOW_TABLE_FILL,
    "netprobe.agent.flow_table.fill",
    "1",
    "netprobe_agent_flow_table_fill_ratio",
    Gauge,
    own [],
    "Fraction of the kernel flow table in use."
);

metric!(
    AGENT_FLOW_TABLE_MEMORY,
    "netprobe.agent.flow_table.memory",
    "By",
    "netprobe_agent_flow_table_memory_bytes",
    Gauge,
    own [],
    "Kernel memory of the flow table."
);

metric!(
    AGENT_READ_DURATION,
    "netprobe.agent.read.duration",
    "s",
    "netprobe_agent_read_duration_seconds",
    Gauge,
    own [],
    "Duration of the last kernel map read cycle."
);

metric!(
    AGENT_CONN_TABLE_ENTRIES,
    "netprobe.agent.connection_table.entries",
    "{connection}",
    "netprobe_agent_connection_table_entries",
    Gauge,
    own [],
    "Entries in the kernel connection table (handshakes in flight and open connections)."
);

metric!(
    AGENT_CONN_TABLE_CAPACITY,
    "netprobe.agent.connection_table.capacity",
    "{connection}",
    "netprobe_agent_connection_table_capacity",
    Gauge,
    own [],
    "Capacity of the kernel connection table."
);

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[
        &AGENT_FLOWS_TRACKED,
        &AGENT_FLOW_TABLE_ENTRIES,
        &AGENT_FLOW_TABLE_CAPACITY,
        &AGENT_FLOW_TABLE_FILL,
        &AGENT_FLOW_TABLE_MEMORY,
        &AGENT_READ_DURATION,
        &AGENT_CONN_TABLE_ENTRIES,
        &AGENT_CONN_TABLE_CAPACITY,
    ],
    families: Some(families),
    counts: None,
};

/// Adds the table families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let h = c.health;
    let fill = if h.flow_table_capacity == 0 {
        0.0
    } else {
        h.flow_table_entries as f64 / h.flow_table_capacity as f64
    };
    out.extend([
        Family::single(&AGENT_FLOWS_TRACKED, Value::Int(h.flows_tracked)),
        Family::single(&AGENT_FLOW_TABLE_ENTRIES, Value::Int(h.flow_table_entries)),
        Family::single(
            &AGENT_FLOW_TABLE_CAPACITY,
            Value::Int(h.flow_table_capacity),
        ),
        Family::single(&AGENT_FLOW_TABLE_FILL, Value::Double(fill)),
        Family::single(
            &AGENT_FLOW_TABLE_MEMORY,
            Value::Int(h.flow_table_memory_bytes),
        ),
        Family::single(&AGENT_READ_DURATION, Value::Double(h.last_read_seconds)),
        Family::single(&AGENT_CONN_TABLE_ENTRIES, Value::Int(h.conn_table_entries)),
        Family::single(
            &AGENT_CONN_TABLE_CAPACITY,
            Value::Int(h.conn_table_capacity),
        ),
    ]);
}
