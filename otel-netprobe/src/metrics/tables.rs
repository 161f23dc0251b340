//! The reader's view of the flow tables: flows tracked, the kernel table's entries, capacity,
//! fill and memory, how long the last read took, and the connection table's entries and
//! capacity.

use super::Cycle;
use crate::{
    export::names,
    frame::{Family, Value},
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
        Family::single(&names::AGENT_FLOWS_TRACKED, Value::Int(h.flows_tracked)),
        Family::single(
            &names::AGENT_FLOW_TABLE_ENTRIES,
            Value::Int(h.flow_table_entries),
        ),
        Family::single(
            &names::AGENT_FLOW_TABLE_CAPACITY,
            Value::Int(h.flow_table_capacity),
        ),
        Family::single(&names::AGENT_FLOW_TABLE_FILL, Value::Double(fill)),
        Family::single(
            &names::AGENT_FLOW_TABLE_MEMORY,
            Value::Int(h.flow_table_memory_bytes),
        ),
        Family::single(
            &names::AGENT_READ_DURATION,
            Value::Double(h.last_read_seconds),
        ),
        Family::single(&names::AGENT_CONN_TABLE_ENTRIES, Value::Int(h.tables.conns)),
        Family::single(
            &names::AGENT_CONN_TABLE_CAPACITY,
            Value::Int(h.tables.conns_capacity),
        ),
    ]);
}
