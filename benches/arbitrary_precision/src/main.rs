//! serde_json with and without `arbitrary_precision`: parse + serialize of the fetch
//! benchmark's response and of a body of 50 numeric items, and number values made, compared
//! and turned into text as the pure-flow benchmark does. Median of 15 rounds each.

use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    // The fetch bench's response and request, plus a numeric-heavy body.
    let contact = br#"{"data":{"id":"c1a2","first_name":"Erlich","last_name":"Bachman","emails":[{"type":"primary","email":"erlich@piedpiper.com"}]}}"#;
    let numeric = serde_json::to_vec(&json!({"items": (0..50).map(|i| json!({"id": 1_000_000 + i, "price": 12.5 + i as f64, "qty": i})).collect::<Vec<_>>()})).unwrap();
    let rounds = 15;
    for (name, body) in [("contact", &contact[..]), ("numeric_50_items", &numeric[..])] {
        let n = if name == "contact" { 200_000 } else { 5_000 };
        let mut per = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..n {
                let v: Value = serde_json::from_slice(black_box(body)).unwrap();
                let out = serde_json::to_vec(&v).unwrap();
                black_box(out);
            }
            per.push(t.elapsed().as_nanos() as f64 / n as f64);
        }
        per.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{name}: median {:.0} ns per parse+serialize", per[rounds / 2]);
    }
    // Pure-flow-like value work: numbers into maps, compared, spliced into text.
    let n = 1_000_000;
    let mut per = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for i in 0..n {
            let v = Value::from(black_box(i as u64));
            let f = v.as_f64().unwrap_or(0.0) > 1000.0;
            black_box((v.to_string(), f));
        }
        per.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    per.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("number_value: median {:.1} ns per from+compare+to_string", per[rounds / 2]);
}
