//! Outbound HTTP for every step, the token endpoint and plugins (DESIGN §5, SECURITY R1–R3, R9).

mod body;
mod budget;
mod client;
pub mod decode;
mod fields;
pub mod guard;
pub mod limit;
mod origin;
mod outbound;
pub mod recording;
mod request;
pub mod retry;
pub mod special_purpose;
pub mod tls;
pub(crate) mod url_template;

pub use budget::MAX_REQUEST_TEMPLATE_BYTES;
pub use client::{
    HttpClient, HttpError, HttpPolicy, HttpResponse, MASKED, NOT_RECORDED, display_url, is_token_like,
    remember_url_secrets,
};
pub use fields::{FieldValue, Fields};
pub use origin::{OriginError, parse_origin};
pub use outbound::Outbound;
pub use recording::Tape;
pub use request::{MAX_TIMEOUT, Method, PreparedRequest, RequestBody, RequestConfig, RequestTemplate};
pub use url_template::UrlTemplate;
