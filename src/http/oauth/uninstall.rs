//! GET|POST /oauth/disable: amoCRM's uninstall hook, its signature checked
//! with either integration's secret.

use super::*;

type HmacSha256 = Hmac<Sha256>;

/// The uninstall hook amoCRM calls when an account turns the integration
/// off: `account_id`, `client_uuid` and `signature` = hex HMAC-SHA256 of
/// `client_uuid|account_id` keyed with the client secret. The parameters are
/// read from the query string, and for POST also from a form or JSON body.
pub(super) async fn disable(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let mut params = query;
    for (k, v) in body_params(&headers, &body) {
        params.entry(k).or_insert(v);
    }
    let get = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let (account_id, client_uuid, signature) =
        (get("account_id"), get("client_uuid"), get("signature"));

    // The client_uuid names the integration; its secret signs the call.
    let integrations = state.api.integrations();
    let wrong_signature = || {
        tracing::warn!("uninstall hook with a wrong signature ignored");
        AppError::new(StatusCode::UNAUTHORIZED, "signature does not match")
    };
    let integration = integrations
        .by_client_id(client_uuid)
        .filter(|i| signature_valid(&i.client_secret, client_uuid, account_id, signature))
        .ok_or_else(wrong_signature)?;
    let account_id = account_id
        .parse::<i64>()
        .map_err(|_| AppError::bad_request("account_id must be a number"))?;
    // An account is uninstalled only by its own integration: a call signed
    // by the other platform's integration is not believed.
    if let Some(domain) = crate::accounts::domain_of(&state.pool, account_id).await? {
        if integrations.for_host(&domain).name != integration.name {
            return Err(wrong_signature());
        }
    }
    // Believed only when amoCRM confirms it (see `uninstall`). A database
    // error is a 503, so that amoCRM tries again.
    let outcome =
        crate::uninstall::handle_call(&state.pool, &state.tokens, &state.api, account_id).await?;
    let message = match outcome {
        crate::uninstall::Outcome::Disconnected { known } => {
            tracing::info!(
                account.id = account_id,
                known,
                "account disconnected by amoCRM"
            );
            "disconnected"
        }
        crate::uninstall::Outcome::StillGranted => "not confirmed: the grant is alive",
        crate::uninstall::Outcome::WillCheck => "to be confirmed with amoCRM",
        crate::uninstall::Outcome::Recorded => {
            "recorded: the account must install again, nothing was changed"
        }
    };
    Ok(Json(serde_json::json!({ "status": 200, "message": message })).into_response())
}

fn body_params(headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.contains("json") {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
            return Vec::new();
        };
        map.into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect()
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    }
}

fn signature_valid(
    secret: &SecretString,
    client_uuid: &str,
    account_id: &str,
    signature: &str,
) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(format!("{client_uuid}|{account_id}").as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_client_uuid_and_account_id() {
        let secret = SecretString::from("s3cret".to_owned());
        let mut mac = HmacSha256::new_from_slice(b"s3cret").unwrap();
        mac.update(b"client-1|42");
        let good = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            good,
            "1ffa137b724b55bdd147529bbae30ea1835b0e2205d04036d843f988c8188c83"
        );
        assert!(signature_valid(&secret, "client-1", "42", &good));
        assert!(signature_valid(
            &secret,
            "client-1",
            "42",
            &good.to_uppercase()
        ));
        assert!(!signature_valid(&secret, "client-1", "43", &good));
        assert!(!signature_valid(&secret, "client-2", "42", &good));
        assert!(!signature_valid(&secret, "client-1", "42", "zz"));
        assert!(!signature_valid(&secret, "client-1", "42", ""));
    }
}
