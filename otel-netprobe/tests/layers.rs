//! The agent's import graph, derived from the source: every `crate::` path (and, in `main.rs`,
//! `otel_netprobe::`) outside test code, by top-level module. The pipeline's stages may only
//! import the stages before them — `ebpf` and `k8s` (the sources), then `flow`, `metrics`,
//! `frame`, `export`, `agent`, `main` — and the leaves (`config`, `telemetry`, `privileges`),
//! which everyone may read, import nothing of the crate. So there is no upward arrow and no
//! cycle; this test keeps it so, and prints the graph (`-- --nocapture`), which the README's
//! layout section draws.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Where a top-level module sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A stage of the pipeline: it may import lower stages and leaves.
    Stage(u8),
    /// A leaf: anyone may import it, it imports nothing of the crate.
    Leaf,
}

/// Each top-level module's place (`None`: a module the layering does not know yet).
fn rank(module: &str) -> Option<Place> {
    Some(match module {
        "ebpf" | "k8s" => Place::Stage(0),
        "flow" => Place::Stage(1),
        "metrics" => Place::Stage(2),
        "frame" => Place::Stage(3),
        "export" => Place::Stage(4),
        "agent" => Place::Stage(5),
        "main" => Place::Stage(6),
        "config" | "telemetry" | "privileges" | "heap" => Place::Leaf,
        _ => return None,
    })
}

/// Arrows that still break the rule, as (file, module it imports): none, and none may come back.
const KNOWN: &[(&str, &str)] = &[];

/// Source text without comments, string and character literals (replaced by spaces, so braces
/// and paths in them do not count).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            // r"..." or r#"..."#: ends at a quote followed by as many hashes.
            i += 2 + hashes;
            let end = format!("\"{}", "#".repeat(hashes));
            while i < b.len() && !b[i..].starts_with(end.as_bytes()) {
                i += 1;
            }
            i += end.len();
            out.push(b' ');
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(b' ');
        } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
            i += char_literal_len(rest).unwrap_or(1);
            out.push(b' ');
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"` or `r#..#"` at the start of `s` (not inside an identifier): the number of hashes.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'r') {
        return None;
    }
    let hashes = s[1..].iter().take_while(|c| **c == b'#').count();
    (s.get(1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a character literal at the start of `s` (`'x'`, `'\n'`, `'\u{..}'`), or
/// `None` for a lifetime.
fn char_literal_len(s: &[u8]) -> Option<usize> {
    if s.get(1) == Some(&b'\\') {
        let close = s[2..].iter().position(|c| *c == b'\'')?;
        return Some(close + 3);
    }
    let text = std::str::from_utf8(&s[1..s.len().min(6)]).unwrap_or_default();
    let c = text.chars().next()?;
    (s.get(1 + c.len_utf8()) == Some(&b'\'')).then(|| 2 + c.len_utf8())
}

/// `code` without the items marked `#[cfg(test)]`.
fn without_tests(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(at) = out.find("#[cfg(test)]") {
        let b = out.as_bytes();
        let mut i = at + "#[cfg(test)]".len();
        // The item ends at its first `;` outside braces, or at the brace closing its body.
        let mut depth = 0;
        while i < b.len() {
            match b[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        out.replace_range(at..i, " ");
    }
    out
}

/// The top-level modules a file's code names: `crate::m`, `crate::{m, n::x}`, `super::m` where
/// `super` is the crate root, and `prefix::m` for the binary's `otel_netprobe::`.
fn imports(code: &str, module_path: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let roots = ["crate::", "otel_netprobe::"];
    for root in roots {
        for (at, _) in code.match_indices(root) {
            let boundary = at == 0 || !is_ident(code.as_bytes()[at - 1]);
            if boundary {
                found.extend(names_after(&code[at + root.len()..]));
            }
        }
    }
    // `super::` from a file directly under the root (`src/x.rs`, `src/x/mod.rs`) names the root.
    if module_path.len() == 1 {
        for (at, _) in code.match_indices("super::") {
            if at == 0 || !is_ident(code.as_bytes()[at - 1]) {
                found.extend(names_after(&code[at + "super::".len()..]));
            }
        }
    }
    found
}

/// The first path segment after `root::`, or each top-level entry of a `{...}` tree.
fn names_after(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(tree) = rest.strip_prefix('{') {
        let mut names = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in tree.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    names.extend(first_ident(&tree[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.extend(first_ident(&tree[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        names
    } else {
        first_ident(rest).into_iter().collect()
    }
}

fn first_ident(s: &str) -> Option<String> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let name = &s[..end];
    (!name.is_empty() && name != "self").then(|| name.to_owned())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every file's imports of other top-level modules: (file, module).
fn graph() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut arrows = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        // `tests.rs` files are the test modules of their parent (`#[cfg(test)] mod tests;`).
        if rel.file_name().is_some_and(|n| n == "tests.rs") || rel == Path::new("lib.rs") {
            continue;
        }
        let mut module_path: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if module_path.last().is_some_and(|l| l == "mod") {
            module_path.pop();
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let code = without_tests(&code_only(&text));
        let own = &module_path[0];
        for m in imports(&code, &module_path) {
            if m != *own {
                arrows.insert((rel.display().to_string(), m));
            }
        }
    }
    arrows
}

fn module_of(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_owned()
}

/// Whether `from` may import `to`.
fn allowed(from: &str, to: &str) -> bool {
    match (rank(from), rank(to)) {
        (Some(Place::Stage(a)), Some(Place::Stage(b))) => b < a,
        (Some(Place::Stage(_)), Some(Place::Leaf)) => true,
        _ => false,
    }
}

/// The module-level cycles (strongly connected components of more than one module).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::from([from.clone()]);
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (_, b) in edges.iter().filter(|(a, _)| *a == n) {
                if seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let scc: BTreeSet<String> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if scc.len() > 1 && !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

#[test]
fn stages_import_only_earlier_stages_and_leaves_import_nothing() {
    let arrows = graph();
    let modules: BTreeSet<String> = arrows
        .iter()
        .flat_map(|(f, m)| [module_of(f), m.clone()])
        .collect();
    for m in &modules {
        assert!(
            rank(m).is_some(),
            "module `{m}` has no place in the layering: add it to rank() and to the README's drawing"
        );
    }
    let edges: BTreeSet<(String, String)> = arrows
        .iter()
        .map(|(f, m)| (module_of(f), m.clone()))
        .collect();
    println!("module imports ({} arrows between modules):", edges.len());
    for (a, b) in &edges {
        let mark = if allowed(a, b) {
            ""
        } else {
            "   <- breaks the layering"
        };
        println!("  {a} -> {b}{mark}");
    }
    let wrong: BTreeSet<(String, String)> = arrows
        .iter()
        .filter(|(f, m)| !allowed(&module_of(f), m))
        .cloned()
        .collect();
    println!("file imports that break the layering: {}", wrong.len());
    for (f, m) in &wrong {
        println!("  {f} -> {m}");
    }
    let mutual: Vec<&(String, String)> = edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .collect();
    println!("modules that import each other: {}", mutual.len());
    for (a, b) in &mutual {
        println!("  {a} <-> {b}");
    }
    let found_cycles = cycles(&edges);
    println!(
        "module cycles (strongly connected sets): {}",
        found_cycles.len()
    );
    for c in &found_cycles {
        println!("  {c:?}");
    }
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(f, m)| ((*f).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(
        wrong, known,
        "imports that break the layering (left: found)"
    );
    if known.is_empty() {
        assert!(found_cycles.is_empty(), "{found_cycles:?}");
    }
}

#[test]
fn the_scanner_sees_what_rust_sees() {
    let code = code_only(
        "use crate::{flow::{A, B}, frame::C};\n// crate::export\n/* crate::agent */\n\
         let s = \"crate::k8s\"; let r = r#\"crate::ebpf\"#; let c = '{';\n\
         fn f<'a>(x: &'a str) { crate::telemetry::x(); }\n\
         #[cfg(test)]\nmod tests { use crate::config; }\n",
    );
    let code = without_tests(&code);
    let found = imports(&code, &["metrics".to_owned(), "x".to_owned()]);
    let want: BTreeSet<String> = ["flow", "frame", "telemetry"].map(String::from).into();
    assert_eq!(found, want, "{code}");
    let top = imports("use super::{agent, config::X};", &["main".to_owned()]);
    assert_eq!(top, ["agent", "config"].map(String::from).into());
}
