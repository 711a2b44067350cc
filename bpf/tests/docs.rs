//! docs/events.md lists every kind with its id and record size, and nothing else.

use bpf::Kind;

#[test]
fn event_reference_lists_every_kind_with_id_and_size() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md"))
        .expect("docs/events.md");
    let mut rows = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | id | `kind` | tracepoint | bytes |
        if cells.len() == 6
            && cells[2].starts_with('`')
            && cells[2].contains('.')
            && cells[1].parse::<u16>().is_ok()
        {
            let id: u16 = cells[1].parse().unwrap();
            let name = cells[2].trim_matches('`').to_string();
            let bytes: usize = cells[4].parse().expect("record bytes column");
            rows.push((id, name, bytes));
        }
    }
    let expected: Vec<(u16, String, usize)> = Kind::ALL
        .iter()
        .map(|k| (*k as u16, k.name().to_string(), k.record_len()))
        .collect();
    assert_eq!(rows, expected, "the kinds table in docs/events.md");
}
