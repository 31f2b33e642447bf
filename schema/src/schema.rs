//! The diesel table definitions, identical for SQLite and PostgreSQL (migrations in
//! `migrations/sqlite` and `migrations/postgres` create the same columns). UUIDs are stored as
//! text and timestamps as naive UTC `TIMESTAMP`s so both backends share one schema.

diesel::table! {
    change_counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        google_alias -> Text,
        time_zone -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        external_id -> Nullable<Text>,
    }
}

diesel::table! {
    tags (id) {
        id -> Text,
        name -> Text,
        visibility -> Text,
        owner_user_id -> Nullable<Text>,
        created_at -> Timestamp,
        external_id -> Nullable<Text>,
    }
}

diesel::table! {
    contacts (id) {
        id -> Text,
        given_name -> Text,
        family_name -> Text,
        display_name -> Nullable<Text>,
        organization -> Nullable<Text>,
        job_title -> Nullable<Text>,
        birthday -> Nullable<Text>,
        notes -> Nullable<Text>,
        created_at -> Timestamp,
        modified_at -> Timestamp,
        change_seq -> BigInt,
        deleted_at -> Nullable<Timestamp>,
        external_id -> Nullable<Text>,
    }
}

diesel::table! {
    contact_emails (contact_id, position) {
        contact_id -> Text,
        position -> Integer,
        address -> Text,
        address_norm -> Text,
        kind -> Text,
        is_primary -> Bool,
    }
}

diesel::table! {
    contact_phones (contact_id, position) {
        contact_id -> Text,
        position -> Integer,
        number -> Text,
        kind -> Text,
    }
}

diesel::table! {
    contact_addresses (contact_id, position) {
        contact_id -> Text,
        position -> Integer,
        kind -> Text,
        street -> Nullable<Text>,
        city -> Nullable<Text>,
        region -> Nullable<Text>,
        postal_code -> Nullable<Text>,
        country -> Nullable<Text>,
        country_code -> Nullable<Text>,
    }
}

diesel::table! {
    contact_tags (contact_id, tag_id) {
        contact_id -> Text,
        tag_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    activities (id) {
        id -> Text,
        title -> Text,
        start_at -> Timestamp,
        end_at -> Timestamp,
        time_zone -> Text,
        all_day -> Bool,
        start_date -> Nullable<Text>,
        end_date -> Nullable<Text>,
        location -> Nullable<Text>,
        notes -> Nullable<Text>,
        status -> Text,
        display_in_calendar -> Bool,
        organizer_user_id -> Text,
        created_at -> Timestamp,
        modified_at -> Timestamp,
        change_seq -> BigInt,
        deleted_at -> Nullable<Timestamp>,
        external_id -> Nullable<Text>,
    }
}

diesel::table! {
    activity_participants (activity_id, position) {
        activity_id -> Text,
        position -> Integer,
        user_id -> Nullable<Text>,
        contact_id -> Nullable<Text>,
        email -> Text,
        email_norm -> Text,
        response_status -> Text,
    }
}

diesel::table! {
    sync_settings (user_id, kind) {
        user_id -> Text,
        kind -> Text,
        auto_sync -> Bool,
        interval_minutes -> Nullable<Integer>,
        cron -> Nullable<Text>,
        tag_id -> Nullable<Text>,
        synchronize_from -> Nullable<Text>,
        trigger_words -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    service_accounts (domain) {
        domain -> Text,
        client_email -> Text,
        client_id -> Text,
        key_ciphertext -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    google_connections (user_id) {
        user_id -> Text,
        method -> Text,
        state -> Text,
        last_error -> Nullable<Text>,
        refresh_token_ciphertext -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    admin_tokens (id) {
        id -> Text,
        label -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oauth_states (state_hash) {
        state_hash -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    app_settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    links (id) {
        id -> Text,
        user_id -> Text,
        kind -> Text,
        crm_id -> Text,
        google_id -> Nullable<Text>,
        state -> Text,
        snapshot -> Text,
        snapshot_hash -> Text,
        etag -> Nullable<Text>,
        google_updated -> Nullable<Timestamp>,
        crm_change_seq -> BigInt,
        pending_since -> Nullable<Timestamp>,
        end_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        google_record -> Nullable<Text>,
    }
}

diesel::table! {
    cursors (user_id, kind) {
        user_id -> Text,
        kind -> Text,
        google_sync_token -> Nullable<Text>,
        google_token_params -> Nullable<Text>,
        google_container -> Nullable<Text>,
        crm_seq -> BigInt,
        full_sync_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> Text,
        user_id -> Text,
        kind -> Text,
        trigger -> Text,
        state -> Text,
        requested_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        counts -> Text,
        conflicts -> Integer,
        errors -> Text,
        options -> Text,
        message -> Nullable<Text>,
        worker -> Nullable<Text>,
        items_done -> Nullable<BigInt>,
        items_known -> Nullable<BigInt>,
    }
}

diesel::table! {
    journal (id) {
        id -> BigInt,
        run_id -> Text,
        user_id -> Text,
        kind -> Text,
        link_id -> Nullable<Text>,
        crm_id -> Nullable<Text>,
        google_id -> Nullable<Text>,
        side -> Text,
        action -> Text,
        rule -> Text,
        field -> Nullable<Text>,
        winner -> Nullable<Text>,
        before_value -> Nullable<Text>,
        after_value -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sync_jobs (user_id, kind) {
        user_id -> Text,
        kind -> Text,
        next_due_at -> Nullable<Timestamp>,
        requested_at -> Nullable<Timestamp>,
        requested_run_id -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        running_run_id -> Nullable<Text>,
        last_success_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        updated_at -> Timestamp,
        settings_version -> Nullable<Timestamp>,
        last_run_at -> Nullable<Timestamp>,
        last_run_id -> Nullable<Text>,
        claimed_at -> Nullable<Timestamp>,
        push_due_at -> Nullable<Timestamp>,
        push_requested_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(tags -> users (owner_user_id));
diesel::table! {
    parked_items (user_id, kind, side, item_id) {
        user_id -> Text,
        kind -> Text,
        side -> Text,
        item_id -> Text,
        attempts -> Integer,
        first_failed_at -> Timestamp,
        last_failed_at -> Timestamp,
        parked_at -> Nullable<Timestamp>,
        last_error -> Text,
    }
}

diesel::table! {
    changes (cursor) {
        cursor -> BigInt,
        kind -> Text,
        record_id -> Text,
        external_id -> Nullable<Text>,
        action -> Text,
        origin -> Text,
        user_id -> Nullable<Text>,
        run_id -> Nullable<Text>,
        tag_id -> Nullable<Text>,
        at -> Timestamp,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Text,
        url -> Text,
        event_types -> Text,
        secret_ciphertext -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        webhook_id -> Text,
        position -> BigInt,
        event_type -> Text,
        body -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        last_status -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_attempts (delivery_id, attempt) {
        delivery_id -> Text,
        attempt -> Integer,
        at -> Timestamp,
        status -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
    }
}

diesel::table! {
    watch_channels (user_id) {
        user_id -> Text,
        channel_id -> Nullable<Text>,
        resource_id -> Nullable<Text>,
        token_hash -> Nullable<Text>,
        expires_at -> Nullable<Timestamp>,
        last_message_number -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(contact_emails -> contacts (contact_id));
diesel::joinable!(contact_phones -> contacts (contact_id));
diesel::joinable!(contact_addresses -> contacts (contact_id));
diesel::joinable!(contact_tags -> contacts (contact_id));
diesel::joinable!(contact_tags -> tags (tag_id));
diesel::joinable!(activity_participants -> activities (activity_id));
diesel::joinable!(activities -> users (organizer_user_id));

diesel::allow_tables_to_appear_in_same_query!(
    change_counter,
    users,
    tags,
    contacts,
    contact_emails,
    contact_phones,
    contact_addresses,
    contact_tags,
    activities,
    activity_participants,
    sync_settings,
    service_accounts,
    google_connections,
    oauth_states,
    admin_tokens,
    app_settings,
    links,
    cursors,
    sync_runs,
    journal,
    sync_jobs,
    parked_items,
    changes,
    webhooks,
    webhook_deliveries,
    webhook_attempts,
    watch_channels,
);
