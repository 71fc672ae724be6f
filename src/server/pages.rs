//! Small HTML pages shared by the server and `tern integrations authorize`'s own callback
//! listener.

/// What a person sees when an authorization worked.
pub const ALL_SET: &str = "All set! Your authorization is complete!";

/// The page the browser shows after the callback; the provider's error text is escaped.
pub fn callback_page(result: &Result<(), String>) -> axum::response::Html<String> {
    let (title, body) = match result {
        Ok(()) => (ALL_SET.to_string(), "You can close this window.".to_string()),
        Err(e) => ("Authorization failed".to_string(), html_escape::encode_text(e).into_owned()),
    };
    axum::response::Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tern</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{}</h1><p>{body}</p></body></html>",
        html_escape::encode_text(&title)
    ))
}
