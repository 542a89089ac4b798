//! A minimal browser for tests: keeps cookies by hand (so a test can inspect, keep or
//! replay them), never follows redirects, and knows how to sign in through the login form.

use std::collections::BTreeMap;

/// A cookie-keeping HTTP client bound to one gateway.
#[derive(Debug, Clone)]
pub struct Browser {
    client: reqwest::Client,
    base: String,
    pub cookies: BTreeMap<String, String>,
    /// Raw `Set-Cookie` headers received, newest last.
    pub set_cookies: Vec<String>,
}

/// A response with its body read.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }

    /// The `value` of `<input … name="{name}" value="…">` in an HTML page.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(html_unescape(&self.body[start..end]))
    }
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

impl Browser {
    pub fn new(client: reqwest::Client, base: impl Into<String>) -> Browser {
        Browser {
            client,
            base: base.into(),
            cookies: BTreeMap::new(),
            set_cookies: vec![],
        }
    }

    /// The `Cookie` header this browser sends.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn absorb(&mut self, res: reqwest::Response) -> Page {
        for v in res.headers().get_all("set-cookie") {
            let raw = v.to_str().unwrap_or_default().to_string();
            if let Some((name, rest)) = raw.split_once('=') {
                let value = rest.split(';').next().unwrap_or_default().to_string();
                let expired = raw.to_ascii_lowercase().contains("max-age=0");
                if expired || value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value);
                }
            }
            self.set_cookies.push(raw);
        }
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap_or_default();
        Page { status, headers, body }
    }

    /// GET `path` as a browser would (Accept: text/html) plus `headers`.
    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
            req = req.header("accept", "text/html,*/*;q=0.8");
        }
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("request");
        self.absorb(res).await
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.get_with(path, &[]).await
    }

    /// GET with `Accept: application/json` (an API client).
    pub async fn get_json(&mut self, path: &str) -> Page {
        self.get_with(path, &[("accept", "application/json")]).await
    }

    /// POSTs an urlencoded form with extra headers (e.g. `Origin`, as browsers send).
    pub async fn post_form_with(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let res = req.send().await.expect("request");
        self.absorb(res).await
    }

    /// The origin this browser's pages come from (`http://127.0.0.1:port`).
    pub fn origin(&self) -> String {
        self.base.trim_end_matches('/').to_string()
    }

    /// POSTs an urlencoded form.
    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let res = req.send().await.expect("request");
        self.absorb(res).await
    }

    /// Opens the login page, then posts the form. Returns the answer to the POST (303 on
    /// success, with `Location` = where the gateway sends the person next).
    pub async fn login(&mut self, username: &str, password: &str, rd: Option<&str>) -> Page {
        let page = self.get("/.gatehouse/login").await;
        assert_eq!(page.status, 200, "login page: {}", page.body);
        let csrf = page.input_value("csrf").expect("csrf field on the login page");
        let rd = rd
            .map(str::to_string)
            .unwrap_or_else(|| page.input_value("rd").unwrap_or_else(|| "/".into()));
        self.post_form(
            "/.gatehouse/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
                ("rd", &rd),
            ],
        )
        .await
    }

    /// Signs out through the portal's sign-out form.
    pub async fn logout(&mut self) -> Page {
        let portal = self.get("/").await;
        let csrf = portal.input_value("csrf").expect("csrf field on the portal");
        self.post_form("/.gatehouse/logout", &[("csrf", &csrf)]).await
    }
}

/// `application/x-www-form-urlencoded` encoding.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
