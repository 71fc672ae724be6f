//! `fetch_variables` with `paginate` against a scripted API on loopback: the requests each
//! kind of pagination sends, the items collected in order, the bounds, and a next page on
//! another origin refused.

use serde_json::{Value, json};
use testkit::scripted::{Canned, Scripted, answer, json_answer};
use testkit::service::Service;

/// A flow that fetches `/contacts` with `paginate` and replies with the count and the ids.
fn paging_flow(api: &Scripted, paginate: Value) -> Value {
    json!({"version": 1, "id": "pages", "steps": [
        {"id": "list", "type": "fetch_variables",
         "request": {"url": format!("{}/contacts", api.url()), "query": {"limit": "2"}},
         "paginate": paginate, "variables": {"total": {"path": "meta.total", "default": null}}},
        {"id": "say", "type": "send_message", "text": "{{contacts}} total={{total}}"}
    ]})
}

/// `paginate` by the cursor in `meta.next_cursor`, sent back as `after`.
fn by_cursor() -> Value {
    json!({"items": "data", "as": "contacts", "cursor": {"from": "meta.next_cursor", "param": "after"}})
}

/// `paginate` by the URL in `links.next`.
fn by_link() -> Value {
    json!({"items": "data", "as": "contacts", "next_link": "links.next"})
}

/// The paging flow over `api` with `paginate`, run once (the message "go").
async fn converse(api: &Scripted, paginate: Value) -> testkit::service::Conversation {
    Service::builder().flow(&paging_flow(api, paginate)).start().converse(&["go"]).await
}

/// Page `n` (from 1) of `pages`, two contacts each, with `extra` fields merged in.
fn page(n: u64, extra: Value) -> Value {
    let mut body = json!({"data": [{"id": n * 10 + 1}, {"id": n * 10 + 2}], "meta": {"total": 14}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn ids(c: &testkit::service::Conversation) -> Vec<u64> {
    let said = c.replies().last().cloned().unwrap_or_default();
    let list: Value = serde_json::from_str(said.split(" total=").next().unwrap()).unwrap();
    list.as_array().unwrap().iter().map(|x| x["id"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_pages_with_a_cursor() {
    let pages: Vec<Canned> = (1..=7)
        .map(|n| {
            let cursor = if n < 7 { json!(format!("c{}", n + 1)) } else { Value::Null };
            json_answer(page(n, json!({"meta": {"total": 14, "next_cursor": cursor}})))
        })
        .collect();
    let api = Scripted::start(vec![("/contacts", pages)]);
    let c = converse(&api, by_cursor()).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    let want: Vec<u64> = (1..=7).flat_map(|n| [n * 10 + 1, n * 10 + 2]).collect();
    assert_eq!(ids(&c), want, "every page's items, in order");
    assert!(c.replies()[0].ends_with("total=14"), "variables come from the first page: {:?}", c.replies());
    let uris: Vec<String> = api.requests().into_iter().map(|r| r.uri).collect();
    let mut expected = vec!["/contacts?limit=2".to_string()];
    expected.extend((2..=7).map(|n| format!("/contacts?limit=2&after=c{n}")));
    assert_eq!(uris, expected);
    let detail = c.step("list")["detail"]["pagination"].clone();
    assert_eq!(detail["items"], 14);
    assert_eq!(detail["pages"].as_array().unwrap().len(), 7);
    assert!(detail.get("truncated").is_none(), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_links_relative_absolute_and_in_the_link_header() {
    let api = Scripted::start(vec![
        ("/contacts", vec![json_answer(page(1, json!({"links": {"next": "/contacts/p2?limit=2"}})))]),
        ("/contacts/p2", vec![json_answer(page(2, json!({"links": {"next": null}})))]),
    ]);
    let c = converse(&api, json!({"items": "$.data[*]", "as": "contacts", "next_link": "links.next"})).await;
    assert_eq!(ids(&c), [11, 12, 21, 22], "{:#}", c.json());

    // GitHub-style: `Link: <…>; rel="next", <…>; rel="last"`, relative targets resolved.
    let with_link = |n: u64, link: Option<&str>| {
        let mut a = json_answer(page(n, json!({})));
        if let Some(l) = link {
            a.headers.push(("link", l.to_string()));
        }
        a
    };
    let api = Scripted::start(vec![
        ("/contacts", vec![with_link(1, Some(r#"</contacts/2>; rel="next", </contacts/3>; rel="last""#))]),
        ("/contacts/2", vec![with_link(2, Some(r#"</contacts/3>; rel="next last""#))]),
        ("/contacts/3", vec![with_link(3, Some(r#"</contacts>; rel="first""#))]),
    ]);
    let c = converse(&api, json!({"items": "data", "as": "contacts", "link_header": true})).await;
    assert_eq!(ids(&c), [11, 12, 21, 22, 31, 32], "{:#}", c.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_offsets_stop_at_an_empty_page() {
    let empty = json_answer(json!({"data": []}));
    let script = || vec![json_answer(page(1, json!({}))), json_answer(page(2, json!({}))), empty.clone()];
    let api = Scripted::start(vec![("/contacts", script())]);
    let c = converse(&api, json!({"items": "data", "as": "contacts", "page": {"param": "page"}})).await;
    assert_eq!(ids(&c), [11, 12, 21, 22]);
    let uris: Vec<String> = api.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/contacts?limit=2&page=1", "/contacts?limit=2&page=2", "/contacts?limit=2&page=3"]);

    let api = Scripted::start(vec![("/contacts", script())]);
    let c = converse(&api, json!({"items": "data", "as": "contacts", "offset": {"param": "offset"}})).await;
    assert_eq!(ids(&c), [11, 12, 21, 22]);
    let uris: Vec<String> = api.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/contacts?limit=2&offset=0", "/contacts?limit=2&offset=2", "/contacts?limit=2&offset=4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pages_and_max_items_bound_it_and_the_trace_says_so() {
    let endless = || (1..=30).map(|n| json_answer(page(n, json!({})))).collect::<Vec<_>>();
    let api = Scripted::start(vec![("/contacts", endless())]);
    let c = converse(&api, json!({"items": "data", "as": "contacts", "page": {"param": "page"}, "max_pages": 3})).await;
    assert_eq!(ids(&c), [11, 12, 21, 22, 31, 32]);
    assert_eq!(api.requests().len(), 3);
    let truncated = c.step("list")["detail"]["pagination"]["truncated"].as_str().unwrap_or_default().to_string();
    assert!(truncated.contains("max_pages (3)"), "{truncated}");

    let api = Scripted::start(vec![("/contacts", endless())]);
    let c = converse(&api, json!({"items": "data", "as": "contacts", "page": {"param": "page"}, "max_items": 5})).await;
    assert_eq!(ids(&c), [11, 12, 21, 22, 31]);
    assert_eq!(api.requests().len(), 3, "no page is fetched past the item cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_page_on_another_origin_or_a_failing_page_fails_the_step() {
    let api = Scripted::start(vec![(
        "/contacts",
        vec![json_answer(page(1, json!({"links": {"next": "https://elsewhere.example/steal"}})))],
    )]);
    let mut flow = paging_flow(&api, by_link());
    flow["steps"][0]["on_error"] = json!("end");
    let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
    let list = c.step("list");
    assert_eq!(list["error"]["code"], "pagination", "{list:#}");
    let message = list["error"]["message"].as_str().unwrap();
    assert!(message.contains("not on the first request's origin"), "{message}");
    assert_eq!(api.requests().len(), 1, "nothing is sent to the other origin");

    let api = Scripted::start(vec![(
        "/contacts",
        vec![json_answer(page(1, json!({"meta": {"next_cursor": "c2"}}))), answer(500, Some("application/json"), "{}")],
    )]);
    let c = converse(&api, by_cursor()).await;
    c.failed_at("list", "http-status");
}

/// Why the pages stopped is in the trace, a misspelt path named with what the page has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_says_why_the_pages_stopped() {
    let api =
        Scripted::start(vec![("/contacts", vec![json_answer(page(1, json!({"links": {"next": "/contacts/p2"}})))])]);
    let c = converse(&api, json!({"items": "data", "as": "contacts", "next_link": "links.nxt"})).await;
    let detail = c.step("list")["detail"]["pagination"].clone();
    let why = detail["last_page"].as_str().unwrap_or_default();
    assert!(why.contains("`links` has no `nxt`") && why.contains("next"), "{detail}");

    let pages = (1..=2)
        .map(|n| json_answer(page(n, json!({"meta": {"next_cursor": if n == 1 { json!("c2") } else { json!("") }}}))))
        .collect();
    let api = Scripted::start(vec![("/contacts", pages)]);
    let c = converse(&api, by_cursor()).await;
    let detail = c.step("list")["detail"]["pagination"].clone();
    assert_eq!(detail["pages"][1]["cursor"], "c2", "{detail}");
    assert!(detail["last_page"].as_str().unwrap_or_default().contains("is empty"), "{detail}");
}

/// A page redirected to another origin, a next link with credentials in it, or a next link
/// that is not a URL fails the step; a cursor that comes back stops the pages; a page number
/// near the largest integer does not overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pages() {
    let elsewhere = Scripted::start(vec![("/stolen", vec![json_answer(json!({"data": ["EVIL"]}))])]);
    let mut moved = answer(302, None, "");
    moved.headers.push(("location", format!("http://localhost:{}/stolen", elsewhere.addr.port())));
    let api = Scripted::start(vec![
        ("/contacts", vec![json_answer(page(1, json!({"links": {"next": "/contacts/p2"}})))]),
        ("/contacts/p2", vec![moved]),
    ]);
    let mut flow = paging_flow(&api, by_link());
    flow["steps"][0]["on_error"] = json!("end");
    let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
    let error = c.step("list")["error"].clone();
    assert!(error["message"].as_str().unwrap_or_default().contains("redirected"), "{error}");

    // A redirect whose Location carries a user name and password is not followed: it would
    // become an `Authorization` header the answering server chose.
    let target = Scripted::start(vec![("/next", vec![json_answer(page(2, json!({})))])]);
    let mut with_user = answer(302, None, "");
    with_user.headers.push(("location", format!("http://u:p@{}/next", target.addr)));
    let api = Scripted::start(vec![
        ("/contacts", vec![json_answer(page(1, json!({"links": {"next": "/redir"}})))]),
        ("/redir", vec![with_user]),
    ]);
    let mut flow = paging_flow(&api, by_link());
    flow["steps"][0]["on_error"] = json!("end");
    let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
    let error = c.step("list")["error"].clone();
    assert!(error["message"].as_str().unwrap_or_default().contains("user name or password"), "{error}");
    assert!(target.requests().is_empty(), "nothing reaches the redirect's target");

    for next in [json!("http://u:p@127.0.0.1:1/x"), json!({"href": "/contacts/p2"})] {
        let api = Scripted::start(vec![("/contacts", vec![json_answer(page(1, json!({"links": {"next": next}})))])]);
        let mut flow = paging_flow(&api, by_link());
        flow["steps"][0]["on_error"] = json!("end");
        let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
        assert_eq!(c.step("list")["error"]["code"], "pagination", "{next}: {:#}", c.json());
        assert_eq!(api.requests().len(), 1, "{next}: nothing more is sent");
    }

    let cursors = ["A", "B", "A"]
        .iter()
        .enumerate()
        .map(|(n, k)| json_answer(page(n as u64 + 1, json!({"meta": {"next_cursor": k}}))))
        .collect();
    let api = Scripted::start(vec![("/contacts", cursors)]);
    let c = converse(&api, by_cursor()).await;
    assert_eq!(api.requests().len(), 3, "A, B, then A again: stop");
    assert!(
        c.step("list")["detail"]["pagination"]["last_page"].as_str().unwrap_or_default().contains("already followed")
    );

    let api =
        Scripted::start(vec![("/contacts", vec![json_answer(page(1, json!({}))), json_answer(page(2, json!({})))])]);
    let c = converse(
        &api,
        json!({"items": "data", "as": "contacts", "page": {"param": "page", "start": 1_000_000_000}, "max_pages": 2}),
    )
    .await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
}

/// `http_request` pages the same way; `save_response_as` keeps the first page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_pages_too() {
    let api = Scripted::start(vec![
        ("/contacts", vec![json_answer(page(1, json!({"links": {"next": "/contacts/p2"}})))]),
        ("/contacts/p2", vec![json_answer(page(2, json!({})))]),
    ]);
    let flow = json!({"version": 1, "id": "pages", "steps": [
        {"id": "list", "type": "http_request", "request": {"url": format!("{}/contacts", api.url())},
         "paginate": {"items": "data", "as": "contacts", "next_link": "links.next"}, "save_response_as": "first"},
        {"id": "say", "type": "send_message", "text": "{{contacts}} total={{first.meta.total}}"}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
    assert_eq!(ids(&c), [11, 12, 21, 22], "{:#}", c.json());
    assert!(c.replies()[0].ends_with("total=14"), "{:?}", c.replies());
}

#[tokio::test]
async fn one_way_to_the_next_page_is_required() {
    let flow = json!({"version": 1, "id": "pages", "steps": [
        {"id": "list", "type": "fetch_variables", "request": {"url": "https://api.example.com/contacts"},
         "paginate": {"items": "data", "as": "contacts", "page": {"param": "page"}, "link_header": true, "max_pages": 500}}
    ]});
    let problems = Service::builder().flow(&flow).refused();
    assert!(problems.contains("/steps/0/paginate") && problems.contains("exactly one of"), "{problems}");
    assert!(problems.contains("/steps/0/paginate/max_pages"), "{problems}");
    let flow = json!({"version": 1, "id": "pages", "steps": [
        {"id": "list", "type": "fetch_variables", "request": {"url": "https://api.example.com/contacts"},
         "paginate": {"items": "data", "as": "contacts", "page": {"param": " "}}}
    ]});
    let problems = Service::builder().flow(&flow).refused();
    assert!(problems.contains("/steps/0/paginate/page/param"), "{problems}");
    let flow = json!({"version": 1, "id": "pages", "steps": [
        {"id": "list", "type": "fetch_variables", "request": {"url": "https://api.example.com/contacts"},
         "paginate": {"items": "data", "as": "contacts", "offset": {"param": "o", "start": u64::MAX}}}
    ]});
    let problems = Service::builder().flow(&flow).refused();
    assert!(problems.contains("/steps/0/paginate/offset/start"), "{problems}");
}
