//! `mnemo::auth::jwt` on its own: HS256 secrets, JWKS files, and a JWKS that the test serves
//! itself over loopback HTTP (key rotation, the refetch cooldown, a provider that goes away).
//! Requests through the server's auth live with the auth tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures_util::future::join_all;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use mnemo::auth::jwt::{JwtSettings, JwtVerifier, looks_like_jwt};
use mnemo::auth::{AuthFailure, Principal};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "a test secret that is long enough for HS256";

/// A 2048-bit RSA key (PKCS#1 DER), made for these tests only.
const RSA_DER: &str = concat!(
    "MIIEowIBAAKCAQEAsvuOUQoUmn4YnHg3/5cFlmLFve/KvUo2hpA5cgO8Ae+8ywoxBcRqhRc0UCQcvbWVuXJKBCN9",
    "aZ+o8DK1KzC+9CFlkHR6i2rlZiecb/6noXBudJ1HkCvH783Gk1tWqaFH4GKeLYEZ4d9CwMImGTcxM4NOdoyYH2d1",
    "s7H4Dr8jqq4xRzMw9GuHpsOeGEOsnENPs4UnJf3idrMKDzeGAyY6YZfyULPMIuvFvk71aWzJlbmQ+/Mv10vfn3o/",
    "zXE2k5B6Qth6Jpw7B+R0Yql+tl8FlZMbH/IVFa4Fvqf69OwlN9O40FW/h0KU5CAF6RrNWP2HaIC/BtNwE94ZaiB9",
    "ZYe4SQIDAQABAoIBAAIXOhHPkq8j6j3IeFKW2eGB/MOlYMjzLFQuks+c5EEuiUlJSj2bwYKVlo6AGX2mBYSrMkE+",
    "a+LduVXsj1BP/oI9PwgGTRjChY4uFMYvI2SmOrgUgg2lh61qsGQWXoEKEAJt2Ufe5YwNdSScyZNxh44NpA8/Wn1b",
    "0nsB1di2pvmoECaMIOI/GXKe9U2IqIvBdMu5AbQwNKOsC+DDWGTogdNM3jcxtcRZ5tCYiD9tzg7G6lXDI6Fk1IdK",
    "72KcHMTVfZlW1EtoKU07fUp6BeVA0yvukUTWkLKzl2ZZqSylyk7l4FVLqbFyKWajxbT8pO/vN13/vuXIulBjiqED",
    "n7qAFk0CgYEA3NE3Vd5xPx7HGKZPwGAYftA533raEjpFepAAW+RZJ+G0NtRnUNdBwx56+gvi0ZgDME6+GYMzjsoP",
    "pfKGgSa479QHpW+HVDe4rNhO637/7nJgA4RJxjztkJnzcU7ZAM/7fuppmPoXQsSddYmttvPTng/e2tsd8Emm2StR",
    "OiFToF0CgYEAz3/5AMOv+0cpNLT2fNu+BLXQmK26c5CEhF/9z/+RUgh6PZRvElLY9GV+MZWqxx/hYKJH92+DIeSX",
    "+EIL8D9TsUe7TQ29TXnhzWde8sMpHCJvIixXSZdL5ui6HSqgRhmzVNft3BxssnJRAcgPOuKla/Dp9KWOTuDaVPns",
    "Fyrq6N0CgYAZPx5phe5Cvj0bN2Ck6RfD4ADN6VjnfpwVAEPaPchnw+l731sUphfRvDlpP1SmjA/JRSd8+UA60iVp",
    "3sm8GHZKjV52bsL1QQ2vTWfwiuuuEouhu01ICg1LXB62VMKA0ka54wlBwU5JhvtNxfkDkuseBkh/k0/f+jvGVqqJ",
    "z+ekzQKBgFb1UZwBZlnPC7S79eSDjpGYxG+HtvDBatezBsJJX1Ramyf9ccLjF2rsscMD7wr+EEyYFcLbZ8AndYyj",
    "2S74yxErd5ImJOQ4JOoY3RCtuyfAQoS2wmnjzvpZI84fVAWstZvj1hn9i4wJHmu5tLA/1YVz9AgD7ayezMD57/gR",
    "k1q9AoGBAMAby59dNKOGbTOw3/10ZcCFxjyvUum+AS2FQC5Al8AQd7pmZ8c4iKURxH9YmSPs2LatoaVNZMeq76NP",
    "+iv5iJwfy5enD69C7zWJYN6k9vn9aeR3yI7ddoFdMuksXPIcUw24Za1B5CrUU4ZJ8F9oqQ2cTS4mufm1Ib7HL8+2",
    "9ACI",
);

/// A P-256 key (PKCS#8 DER), made for these tests only.
const P256_DER: &str = concat!(
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgI0VY/r95MTEKJmmqYe7kAsqP93ZzOp9rTDY8e20u",
    "c4yhRANCAATtypaua1fLzLX03TQeS/p+jh0zFdQ/C+4zP0trD3m36tly4D4Z4ArSLCRO8Ik669IN4e6XxQZxsK7E",
    "GJP6LOvR",
);

/// The PKCS#8 prefix of an Ed25519 private key; its 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn settings() -> JwtSettings {
    JwtSettings {
        secret: None,
        jwks: None,
        issuer: None,
        audience: None,
        user_claim: "sub".to_string(),
    }
}

fn with_secret(edit: impl FnOnce(&mut JwtSettings)) -> JwtVerifier {
    let mut s = settings();
    s.secret = Some(SECRET.to_string());
    edit(&mut s);
    JwtVerifier::new(s).unwrap()
}

fn with_jwks(jwks: &str) -> JwtVerifier {
    let mut s = settings();
    s.jwks = Some(jwks.to_string());
    JwtVerifier::new(s).unwrap()
}

fn now() -> u64 {
    get_current_timestamp()
}

/// Claims valid for ten minutes, with `extra` merged in (a `null` removes a claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "exp": now() + 600, "iat": now()});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn hs256(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn user(id: &str) -> Result<Principal, AuthFailure> {
    Ok(Principal::User {
        user_id: id.to_string(),
    })
}

fn service(name: &str) -> Result<Principal, AuthFailure> {
    Ok(Principal::Service {
        name: name.to_string(),
    })
}

/// A signing key and the public JWK a provider would publish for it.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    /// A fresh Ed25519 key.
    fn ed25519(kid: &str) -> TestKey {
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        der.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        TestKey::new(kid, Algorithm::EdDSA, EncodingKey::from_ed_der(&der), true)
    }

    /// The fixed RSA key; `declare_alg` puts `alg: RS256` in its JWK.
    fn rsa(kid: &str, declare_alg: bool) -> TestKey {
        let der = STANDARD.decode(RSA_DER).unwrap();
        TestKey::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(&der),
            declare_alg,
        )
    }

    /// The fixed P-256 key.
    fn p256(kid: &str) -> TestKey {
        let der = STANDARD.decode(P256_DER).unwrap();
        TestKey::new(kid, Algorithm::ES256, EncodingKey::from_ec_der(&der), true)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey, declare_alg: bool) -> TestKey {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if !declare_alg {
            jwk.as_object_mut().unwrap().remove("alg");
        }
        TestKey {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(&self.kid), claims)
    }

    fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, claims, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// A JWKS provider on 127.0.0.1:0 that counts the requests it answers.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(doc: Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let body = Arc::new(Mutex::new(doc.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (serving, counting) = (body.clone(), hits.clone());
        let task = actix_web::rt::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (body, hits) = (serving.clone(), counting.clone());
                actix_web::rt::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = body.lock().unwrap().clone();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        JwksServer {
            url,
            body,
            hits,
            task,
        }
    }

    fn publish(&self, doc: Value) {
        *self.body.lock().unwrap() = doc.to_string();
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits (up to 5 s) until `n` requests were answered.
    async fn wait_for_hits(&self, n: usize) {
        let start = Instant::now();
        while self.hits() < n {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the JWKS server had {} request(s), not {n}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Closes the port: later connections are refused.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[actix_web::test]
async fn an_hs256_token_names_its_sub_as_the_user() {
    let v = with_secret(|_| {});
    assert_eq!(
        v.verify(&hs256(SECRET, &claims(json!({})))).await,
        user("alice")
    );
    // no `sub` and the default user claim: nobody to act as
    let no_sub = hs256(SECRET, &claims(json!({"sub": null})));
    assert_eq!(v.verify(&no_sub).await, Err(AuthFailure::Invalid));
    // only HS256 with a secret, even when signed with the same secret
    let mut header = Header::new(Algorithm::HS512);
    header.typ = Some("JWT".to_string());
    let hs512 = encode(
        &header,
        &claims(json!({})),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(v.verify(&hs512).await, Err(AuthFailure::Invalid));
}

#[actix_web::test]
async fn the_user_claim_setting_picks_the_claim_naming_the_user() {
    let v = with_secret(|s| s.user_claim = "email".to_string());
    let token = hs256(SECRET, &claims(json!({"email": "bob@example.com"})));
    assert_eq!(v.verify(&token).await, user("bob@example.com"));
    // `sub` alone does not do
    let token = hs256(SECRET, &claims(json!({})));
    assert_eq!(v.verify(&token).await, Err(AuthFailure::Invalid));

    let v = with_secret(|s| s.user_claim = "uid".to_string());
    let token = hs256(SECRET, &claims(json!({"uid": 42})));
    assert_eq!(v.verify(&token).await, user("42"));
    for bad in [
        json!(""),
        json!(4.5),
        json!({"id": 1}),
        json!(["u1"]),
        json!(true),
    ] {
        let token = hs256(SECRET, &claims(json!({"uid": bad})));
        assert_eq!(v.verify(&token).await, Err(AuthFailure::Invalid), "{bad}");
    }
}

#[actix_web::test]
async fn the_service_scope_makes_a_service() {
    let v = with_secret(|_| {});
    let token = hs256(
        SECRET,
        &claims(json!({"sub": "billing", "scope": "openid mnemo:service"})),
    );
    assert_eq!(v.verify(&token).await, service("billing"));
    let token = hs256(
        SECRET,
        &claims(json!({"sub": "billing", "scope": ["profile", "mnemo:service"]})),
    );
    assert_eq!(v.verify(&token).await, service("billing"));
    let token = hs256(
        SECRET,
        &claims(json!({"sub": null, "scope": "mnemo:service"})),
    );
    assert_eq!(v.verify(&token).await, service("jwt"));
    // a scope that merely contains the word is not it
    let token = hs256(
        SECRET,
        &claims(json!({"scope": "mnemo:services mnemo:service:read"})),
    );
    assert_eq!(v.verify(&token).await, user("alice"));
}

#[actix_web::test]
async fn tokens_out_of_their_time_are_expired() {
    let v = with_secret(|_| {});
    let t = now();
    let expired = hs256(SECRET, &claims(json!({"exp": t - 120})));
    assert_eq!(v.verify(&expired).await, Err(AuthFailure::Expired));
    let early = hs256(SECRET, &claims(json!({"nbf": t + 3600})));
    assert_eq!(v.verify(&early).await, Err(AuthFailure::Expired));
    // within the 30 s of leeway
    let just_expired = hs256(SECRET, &claims(json!({"exp": t - 5})));
    assert_eq!(v.verify(&just_expired).await, user("alice"));
    let nearly_valid = hs256(SECRET, &claims(json!({"nbf": t + 5})));
    assert_eq!(v.verify(&nearly_valid).await, user("alice"));
    // `exp` is required, and must be a number
    let forever = hs256(SECRET, &claims(json!({"exp": null})));
    assert_eq!(v.verify(&forever).await, Err(AuthFailure::Invalid));
    let text_exp = hs256(SECRET, &claims(json!({"exp": "tomorrow"})));
    assert_eq!(v.verify(&text_exp).await, Err(AuthFailure::Invalid));
}

#[actix_web::test]
async fn a_wrong_secret_or_a_mangled_token_is_invalid() {
    let v = with_secret(|_| {});
    let other = hs256(
        "another secret, just as long as the first",
        &claims(json!({})),
    );
    assert_eq!(v.verify(&other).await, Err(AuthFailure::Invalid));

    // the payload swapped for another user's, the signature kept
    let good = hs256(SECRET, &claims(json!({})));
    let forged = hs256(SECRET, &claims(json!({"sub": "mallory"})));
    let g: Vec<&str> = good.split('.').collect();
    let f: Vec<&str> = forged.split('.').collect();
    let spliced = format!("{}.{}.{}", g[0], f[1], g[2]);
    assert_eq!(v.verify(&spliced).await, Err(AuthFailure::Invalid));

    for junk in [
        "",
        "a.b.c",
        "not a token",
        "eyJhbGciOiJIUzI1NiJ9..",
        &"a".repeat(20_000),
    ] {
        assert_eq!(
            v.verify(junk).await,
            Err(AuthFailure::Invalid),
            "{junk:.20}"
        );
    }
    // an unsigned token
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    let unsigned = format!("{header}.{payload}.");
    assert_eq!(v.verify(&unsigned).await, Err(AuthFailure::Invalid));
}

#[actix_web::test]
async fn issuer_and_audience_are_checked_when_set() {
    let v = with_secret(|s| {
        s.issuer = Some("https://login.example".to_string());
        s.audience = Some("mnemo".to_string());
    });
    let good = json!({"iss": "https://login.example", "aud": "mnemo"});
    assert_eq!(v.verify(&hs256(SECRET, &claims(good))).await, user("alice"));
    let in_array = json!({"iss": "https://login.example", "aud": ["chat", "mnemo"]});
    assert_eq!(
        v.verify(&hs256(SECRET, &claims(in_array))).await,
        user("alice")
    );

    for bad in [
        json!({"iss": "https://evil.example", "aud": "mnemo"}),
        json!({"iss": null, "aud": "mnemo"}),
        json!({"iss": ["https://login.example"], "aud": "mnemo"}),
        json!({"iss": "https://login.example", "aud": "chat"}),
        json!({"iss": "https://login.example", "aud": ["chat", "search"]}),
        json!({"iss": "https://login.example", "aud": null}),
    ] {
        let token = hs256(SECRET, &claims(bad.clone()));
        assert_eq!(v.verify(&token).await, Err(AuthFailure::Invalid), "{bad}");
    }

    // unset, neither is looked at
    let v = with_secret(|_| {});
    let token = hs256(
        SECRET,
        &claims(json!({"iss": "https://anyone.example", "aud": "anything"})),
    );
    assert_eq!(v.verify(&token).await, user("alice"));
}

#[actix_web::test]
async fn settings_that_cannot_work_are_refused() {
    assert!(JwtVerifier::new(settings()).is_err());
    let mut blank = settings();
    blank.secret = Some("  ".to_string());
    blank.jwks = Some(String::new());
    assert!(JwtVerifier::new(blank).is_err());
    let mut both = settings();
    both.secret = Some(SECRET.to_string());
    both.jwks = Some("https://login.example/jwks.json".to_string());
    let err = JwtVerifier::new(both).unwrap_err();
    assert!(err.contains("both"), "{err}");

    let dir = std::env::temp_dir().join(format!("mnemo-jwt-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.json");
    let mut s = settings();
    s.jwks = Some(missing.display().to_string());
    assert!(JwtVerifier::new(s).is_err());
    for (name, content) in [
        ("garbage.json", "not json".to_string()),
        ("no-keys.json", json!({"keys": "nope"}).to_string()),
        // a symmetric key is never taken from a JWKS
        (
            "oct.json",
            json!({"keys": [{"kty": "oct", "kid": "h", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(SECRET)}]})
                .to_string(),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let mut s = settings();
        s.jwks = Some(path.display().to_string());
        assert!(JwtVerifier::new(s).is_err(), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[actix_web::test]
async fn jwts_are_told_from_api_keys() {
    let token = hs256(SECRET, &claims(json!({})));
    assert!(looks_like_jwt(&token));
    assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."));
    for not_jwt in [
        "",
        "mnemo_3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "a..c",
        "ab+c.de/f.gh",
        "ey J.ab.cd",
    ] {
        assert!(!looks_like_jwt(not_jwt), "{not_jwt}");
    }
}

#[actix_web::test]
async fn a_jwks_over_http_verifies_by_kid_and_is_fetched_once() {
    let ed = TestKey::ed25519("ed-1");
    let rsa = TestKey::rsa("rsa-1", false);
    let server = JwksServer::start(jwks(&[&ed, &rsa])).await;
    let v = with_jwks(&server.url);
    assert_eq!(
        server.hits(),
        0,
        "nothing is fetched before the first token"
    );

    // many tokens at once before any key is cached: one fetch between them
    let token = ed.sign(&claims(json!({})));
    let results = join_all((0..20).map(|_| v.verify(&token))).await;
    assert!(results.iter().all(|r| *r == user("alice")), "{results:?}");
    assert_eq!(server.hits(), 1);

    assert_eq!(v.verify(&rsa.sign(&claims(json!({})))).await, user("alice"));
    // the RSA JWK names no alg: any RSA algorithm of the key verifies, PSS too
    let pss = rsa.sign_as(
        Algorithm::PS256,
        Some("rsa-1"),
        &claims(json!({"sub": "pat"})),
    );
    assert_eq!(v.verify(&pss).await, user("pat"));
    // no kid, and two keys to choose from
    let no_kid = ed.sign_as(Algorithm::EdDSA, None, &claims(json!({})));
    assert_eq!(v.verify(&no_kid).await, Err(AuthFailure::Invalid));
    // a key of the set, the wrong signer
    let impostor = TestKey::ed25519("ed-1").sign(&claims(json!({})));
    assert_eq!(v.verify(&impostor).await, Err(AuthFailure::Invalid));
    let expired = ed.sign(&claims(json!({"exp": now() - 3600})));
    assert_eq!(v.verify(&expired).await, Err(AuthFailure::Expired));
    assert_eq!(server.hits(), 1, "the keys are cached");

    // with a single key in the set, a token without a kid uses it
    let single = JwksServer::start(jwks(&[&ed])).await;
    assert_eq!(with_jwks(&single.url).verify(&no_kid).await, user("alice"));
    server.stop().await;
    single.stop().await;
}

#[actix_web::test]
async fn a_jwks_never_verifies_by_an_algorithm_its_key_does_not_name() {
    let ed = TestKey::ed25519("ed-1");
    let rsa = TestKey::rsa("rsa-1", true);
    let mut doc = jwks(&[&ed, &rsa]);
    doc["keys"].as_array_mut().unwrap().push(
        json!({"kty": "oct", "kid": "hmac", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(SECRET)}),
    );
    let server = JwksServer::start(doc).await;
    let v = with_jwks(&server.url);
    assert_eq!(v.verify(&ed.sign(&claims(json!({})))).await, user("alice"));
    let c = claims(json!({"sub": "mallory"}));

    // `none`, signed or not
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"ed-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(c.to_string());
    for sig in ["", "c2lnbmF0dXJl"] {
        let unsigned = format!("{header}.{payload}.{sig}");
        assert_eq!(v.verify(&unsigned).await, Err(AuthFailure::Invalid));
    }
    // HS256 with the published public key as the secret
    let public_x = ed.jwk["x"].as_str().unwrap();
    for secret in [
        public_x.as_bytes().to_vec(),
        URL_SAFE_NO_PAD.decode(public_x).unwrap(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ed-1".to_string());
        let confused = encode(&header, &c, &EncodingKey::from_secret(&secret).unwrap()).unwrap();
        assert_eq!(v.verify(&confused).await, Err(AuthFailure::Invalid));
    }
    // HS256 by a symmetric key published in the set
    assert_eq!(
        v.verify(&hs256(SECRET, &c)).await,
        Err(AuthFailure::Invalid)
    );
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac".to_string());
    let by_oct = encode(
        &header,
        &c,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(v.verify(&by_oct).await, Err(AuthFailure::Invalid));
    // an ES256 token naming the Ed25519 key
    let p256 = TestKey::p256("ed-1");
    assert_eq!(v.verify(&p256.sign(&c)).await, Err(AuthFailure::Invalid));
    // the RSA JWK says RS256: PS256 by the very same key is refused
    let pss = rsa.sign_as(Algorithm::PS256, Some("rsa-1"), &c);
    assert_eq!(v.verify(&pss).await, Err(AuthFailure::Invalid));
    assert_eq!(
        server.hits(),
        1,
        "none of these made mnemo fetch the set again"
    );
    server.stop().await;
}

#[actix_web::test]
async fn a_rotated_key_verifies_after_one_refetch() {
    let old = TestKey::ed25519("2026-old");
    let new = TestKey::ed25519("2026-new");
    let server = JwksServer::start(jwks(&[&old])).await;
    let v = with_jwks(&server.url);
    assert_eq!(v.verify(&old.sign(&claims(json!({})))).await, user("alice"));
    assert_eq!(server.hits(), 1);

    server.publish(jwks(&[&new]));
    let token = new.sign(&claims(json!({"sub": "bob"})));
    assert_eq!(v.verify(&token).await, user("bob"));
    assert_eq!(server.hits(), 2);
    assert_eq!(v.verify(&token).await, user("bob"));
    // the retired key is gone, and its kid (now unknown) fetches nothing within the cooldown
    assert_eq!(
        v.verify(&old.sign(&claims(json!({})))).await,
        Err(AuthFailure::Invalid)
    );
    assert_eq!(server.hits(), 2);
    server.stop().await;
}

#[actix_web::test]
async fn unknown_kids_fetch_at_most_once_per_cooldown() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let v = with_jwks(&server.url);
    assert_eq!(v.verify(&key.sign(&claims(json!({})))).await, user("alice"));
    assert_eq!(server.hits(), 1);

    let flood: Vec<String> = (0..50)
        .map(|_| {
            let kid = uuid::Uuid::new_v4().to_string();
            key.sign_as(Algorithm::EdDSA, Some(&kid), &claims(json!({})))
        })
        .collect();
    let results = join_all(flood.iter().map(|t| v.verify(t))).await;
    assert!(results.iter().all(|r| *r == Err(AuthFailure::Invalid)));
    assert_eq!(server.hits(), 2, "one refetch for the whole flood");
    for t in &flood[..10] {
        assert_eq!(v.verify(t).await, Err(AuthFailure::Invalid));
    }
    assert_eq!(server.hits(), 2);
    // known keys go on verifying meanwhile
    assert_eq!(v.verify(&key.sign(&claims(json!({})))).await, user("alice"));

    // once the cooldown is over, an unknown kid may fetch again
    let v = with_jwks(&server.url)
        .with_jwks_timing(Duration::from_millis(300), Duration::from_secs(600));
    assert_eq!(v.verify(&flood[0]).await, Err(AuthFailure::Invalid));
    assert_eq!(v.verify(&flood[1]).await, Err(AuthFailure::Invalid));
    assert_eq!(server.hits(), 4, "a first fetch, then one refetch");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(v.verify(&flood[2]).await, Err(AuthFailure::Invalid));
    assert_eq!(server.hits(), 5);
    server.stop().await;
}

#[actix_web::test]
async fn an_unreachable_jwks_is_unavailable_until_keys_are_cached() {
    let key = TestKey::ed25519("k1");
    let token = key.sign(&claims(json!({})));

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let v = with_jwks(&url);
    assert_eq!(v.verify(&token).await, Err(AuthFailure::Unavailable));
    assert_eq!(v.verify(&token).await, Err(AuthFailure::Unavailable));

    // keys older than their max age are refreshed in the background...
    let server = JwksServer::start(jwks(&[&key])).await;
    let v = with_jwks(&server.url).with_jwks_timing(Duration::from_secs(30), Duration::ZERO);
    assert_eq!(v.verify(&token).await, user("alice"));
    assert_eq!(server.hits(), 1);
    assert_eq!(v.verify(&token).await, user("alice"));
    server.wait_for_hits(2).await;

    // ...and while the provider is away the cached ones stay in use
    server.stop().await;
    for _ in 0..3 {
        assert_eq!(v.verify(&token).await, user("alice"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unknown = key.sign_as(Algorithm::EdDSA, Some("k2"), &claims(json!({})));
    assert_eq!(v.verify(&unknown).await, Err(AuthFailure::Invalid));
    assert_eq!(v.verify(&token).await, user("alice"));
}

#[actix_web::test]
async fn a_jwks_file_is_read_once_at_start() {
    let rsa = TestKey::rsa("rsa", false);
    let ec = TestKey::p256("ec");
    let ed = TestKey::ed25519("ed");
    let mut doc = jwks(&[&rsa, &ec, &ed]);
    // keys that cannot verify are skipped, not fatal
    doc["keys"].as_array_mut().unwrap().extend([
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa.jwk["n"], "e": rsa.jwk["e"]}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AAAA", "y": "AAAA"}),
        json!({"kty": "OKP", "kid": "short", "crv": "Ed25519", "x": "AAAA"}),
        json!({"kty": "weird", "kid": "w"}),
    ]);
    let path = std::env::temp_dir().join(format!("mnemo-jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, doc.to_string()).unwrap();
    let plain = with_jwks(&path.display().to_string());
    let prefixed = with_jwks(&format!("file://{}", path.display()));
    std::fs::remove_file(&path).unwrap();

    let c = claims(json!({}));
    for v in [&plain, &prefixed] {
        assert_eq!(v.verify(&rsa.sign(&c)).await, user("alice"));
        assert_eq!(v.verify(&ec.sign(&c)).await, user("alice"));
        assert_eq!(v.verify(&ed.sign(&c)).await, user("alice"));
        // the Ed25519 key under the EC key's kid
        let wrong = ed.sign_as(Algorithm::EdDSA, Some("ec"), &c);
        assert_eq!(v.verify(&wrong).await, Err(AuthFailure::Invalid));
        for kid in ["enc", "short", "nobody"] {
            let token = ed.sign_as(Algorithm::EdDSA, Some(kid), &c);
            assert_eq!(v.verify(&token).await, Err(AuthFailure::Invalid), "{kid}");
        }
    }
}

#[actix_web::test]
async fn one_verifier_is_shared_by_all_workers() {
    fn shareable<T: Send + Sync + 'static>(_: &T) {}
    fn sendable<T: Send>(_: &T) {}
    let v = Arc::new(with_jwks("https://login.example/.well-known/jwks.json"));
    shareable(&v);
    let verifying = v.verify("a.b.c");
    sendable(&verifying);
    assert_eq!(verifying.await, Err(AuthFailure::Invalid));
    // nothing secret in its Debug
    let shown = format!("{:?}", with_secret(|_| {}));
    assert!(!shown.contains(SECRET), "{shown}");
    let mut s = settings();
    s.secret = Some(SECRET.to_string());
    assert!(!format!("{s:?}").contains(SECRET));
}
