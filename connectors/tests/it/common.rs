//! Test harness: an emulator per test, accounts connected to it with each kind of credentials.

use crmsync_connectors::{
    ClientOptions, Credentials, GoogleAccount, GoogleEndpoints, Person, RetryPolicy,
    SCOPE_CALENDAR, SCOPE_CONTACTS,
};
use crmsync_emulator::{Emulator, EmulatorServer};

pub struct Env {
    pub server: EmulatorServer,
}

impl Env {
    pub async fn new() -> Env {
        let server = EmulatorServer::start_local()
            .await
            .expect("emulator starts");
        Env { server }
    }

    pub fn emu(&self) -> &Emulator {
        self.server.emulator()
    }

    pub fn base(&self) -> String {
        self.server.base_url().trim_end_matches('/').to_string()
    }

    pub fn endpoints(&self) -> GoogleEndpoints {
        GoogleEndpoints::emulator(self.server.base_url())
    }

    /// Creates `email` and mints a token with both connector scopes.
    pub fn token(&self, email: &str) -> String {
        self.emu().create_user(email).expect("user");
        self.emu()
            .mint_access_token(
                email,
                &[SCOPE_CALENDAR.to_string(), SCOPE_CONTACTS.to_string()],
            )
            .expect("token")
    }

    /// An account for a fresh user with a fixed access token and fast retries.
    pub async fn account(&self, email: &str) -> GoogleAccount {
        self.account_with(email, fast()).await
    }

    pub async fn account_with(&self, email: &str, options: ClientOptions) -> GoogleAccount {
        let token = self.token(email);
        GoogleAccount::connect(&self.endpoints(), Credentials::AccessToken(token), options)
            .await
            .expect("connect")
    }

    /// A service-account key for `example.com` and its client id.
    pub fn service_account(&self) -> (yup_oauth2_key::Key, String) {
        let v = self
            .emu()
            .create_service_account("example.com", self.server.base_url());
        let client_id = v["client_id"].as_str().expect("client_id").to_string();
        (serde_json::from_value(v).expect("key parses"), client_id)
    }

    /// Counts of one method in the emulator's stats.
    pub fn count(&self, method: &str) -> u64 {
        self.emu().stats().count(method)
    }
}

/// Fast retries so fault tests take milliseconds.
pub fn fast() -> ClientOptions {
    let mut retry = RetryPolicy::fast(4);
    retry.people_minute_windows = false;
    ClientOptions {
        retry,
        calendar_rate_per_minute: Some(0),
        ..Default::default()
    }
}

/// A contact carrying a CRM id in clientData.
pub fn person(i: usize) -> Person {
    use crmsync_connectors::people1::api::{ClientData, EmailAddress, Name};
    Person {
        names: Some(vec![Name {
            given_name: Some(format!("Given{i}")),
            family_name: Some(format!("Family{i}")),
            ..Default::default()
        }]),
        email_addresses: Some(vec![EmailAddress {
            value: Some(format!("person{i}@acme.test")),
            type_: Some("work".into()),
            ..Default::default()
        }]),
        client_data: Some(vec![ClientData {
            key: Some("crm_id".into()),
            value: Some(format!("crm-{i}")),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

pub fn given_name(p: &Person) -> Option<&str> {
    p.names.as_ref()?.first()?.given_name.as_deref()
}

pub mod yup_oauth2_key {
    pub type Key = crmsync_connectors::yup_oauth2::ServiceAccountKey;
}
