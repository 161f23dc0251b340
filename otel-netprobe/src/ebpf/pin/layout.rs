//! Whether pinned maps fit the object this agent loads: aya reuses a pinned map by name
//! without looking at it, so every pinned map is compared here first — type, key and value
//! sizes, capacity (after the configuration's overrides) and flags — and the layout version
//! kept in our meta map ([`netprobe_ebpf::LAYOUT_VERSION`]).

use std::path::Path;

use aya::maps::MapInfo;

/// What a map of the object will look like once created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The map's name in the object (and its pin's file name).
    pub name: String,
    /// `bpf_map_type`.
    pub map_type: u32,
    /// Key size, bytes.
    pub key_size: u32,
    /// Value size, bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` flags.
    pub map_flags: u32,
}

/// The shared maps of `object` (not its `.rodata`/`.bss`/`.data` globals, which belong to
/// one load of the programs, nor the coverage slots, whose assignment to interfaces lives in
/// one agent's memory: a new agent starts with empty slots), with the capacities `overrides`
/// sets (by map name).
pub fn shapes(
    object: &[u8],
    overrides: impl Fn(&str) -> Option<u32>,
) -> Result<Vec<Shape>, String> {
    let obj = aya_obj::Object::parse(object).map_err(|e| e.to_string())?;
    let mut shapes: Vec<Shape> = obj
        .maps
        .iter()
        .filter(|(name, _)| !name.starts_with('.') && *name != netprobe_ebpf::IFACES_MAP)
        .map(|(name, m)| Shape {
            name: name.clone(),
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: overrides(name).unwrap_or(m.max_entries()),
            map_flags: m.map_flags(),
        })
        .collect();
    shapes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(shapes)
}

/// What is pinned in a directory, against what the object needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing pinned yet.
    Empty,
    /// Every map pinned and fitting: adopt them.
    Compatible,
    /// Replace the pinned state, for this reason (one line for the log).
    Incompatible(String),
}

/// The shape of the map pinned at `path`, from the kernel (`None`: not pinned or unreadable).
pub(crate) fn pinned(path: &Path, name: &str) -> Option<Shape> {
    let info = MapInfo::from_pin(path).ok()?;
    Some(Shape {
        name: name.to_owned(),
        map_type: info.map_type().ok()? as u32,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        map_flags: info.map_flags(),
    })
}

/// Compares the maps pinned in `dir` (and the layout version `version` read from our meta
/// map, `None` when there is none) with `want`.
pub fn verdict(dir: &Path, want: &[Shape], version: Option<u32>) -> Verdict {
    let found: Vec<Option<Shape>> = want
        .iter()
        .map(|s| pinned(&dir.join(&s.name), &s.name))
        .collect();
    if version.is_none() && found.iter().all(Option::is_none) {
        return Verdict::Empty;
    }
    match version {
        None => return Verdict::Incompatible("no layout version pinned".into()),
        Some(v) if v != netprobe_ebpf::LAYOUT_VERSION => {
            return Verdict::Incompatible(format!(
                "layout version {v} ≠ {}",
                netprobe_ebpf::LAYOUT_VERSION
            ));
        }
        Some(_) => {}
    }
    for (w, f) in want.iter().zip(&found) {
        let Some(f) = f else {
            return Verdict::Incompatible(format!("map {} is not pinned", w.name));
        };
        if let Some(reason) = difference(f, w) {
            return Verdict::Incompatible(format!("map {}: {reason}", w.name));
        }
    }
    Verdict::Compatible
}

/// The first way `found` differs from `want`, as "what: found ≠ wanted".
pub fn difference(found: &Shape, want: &Shape) -> Option<String> {
    [
        ("map type", found.map_type, want.map_type),
        ("key size", found.key_size, want.key_size),
        ("value size", found.value_size, want.value_size),
        ("max_entries", found.max_entries, want.max_entries),
        ("map_flags", found.map_flags, want.map_flags),
    ]
    .into_iter()
    .find(|(_, f, w)| f != w)
    .map(|(what, f, w)| format!("{what} {f} ≠ {w}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(max_entries: u32) -> Shape {
        Shape {
            name: "FLOWS4".into(),
            map_type: 1,
            key_size: 16,
            value_size: 48,
            max_entries,
            map_flags: 0,
        }
    }

    #[test]
    fn a_difference_names_the_field_and_both_values() {
        assert_eq!(difference(&shape(65536), &shape(65536)), None);
        assert_eq!(
            difference(&shape(65536), &shape(131_072)).as_deref(),
            Some("max_entries 65536 ≠ 131072")
        );
    }

    #[test]
    fn the_object_lists_its_shared_maps_with_the_overrides() {
        let overrides = |n: &str| (n == netprobe_ebpf::FLOWS4_MAP).then_some(4096);
        let shapes = shapes(crate::ebpf::OBJECT, overrides).unwrap();
        let names: Vec<&str> = shapes.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&netprobe_ebpf::FLOWS4_MAP), "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        let flows = shapes.iter().find(|s| s.name == "FLOWS4").unwrap();
        assert_eq!(flows.max_entries, 4096);
    }
}
