"""The route table: every route named, each handler declaring its access."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from xenkeep.web import api, pools, setup, views
from xenkeep.web.backup import setup_backup_routes
from xenkeep.web.operations import setup_operation_routes


def setup_routes(app: web.Application, static_dir: Path) -> None:
    """Register every route of the daemon."""
    r = app.router
    r.add_get("/", views.dashboard, name="dashboard")
    r.add_get("/login", views.login_page, name="login")
    r.add_post("/login", views.login_submit, name="login_submit")
    r.add_post("/logout", views.logout, name="logout")
    r.add_get("/setup", setup.setup_index, name="setup")
    r.add_get("/setup/{step}", setup.setup_step, name="setup_step")
    r.add_post("/setup/{step}", setup.setup_step_submit, name="setup_step_submit")
    r.add_get("/account", views.account_page, name="account")
    r.add_post("/account/tokens", views.account_token_create, name="account_token_create")
    r.add_post(
        "/account/tokens/{token_id}/revoke",
        views.account_token_revoke,
        name="account_token_revoke",
    )
    r.add_post("/account/sign-out-all", views.account_sign_out_all, name="account_sign_out_all")
    r.add_get("/admin/audit", views.audit_page, name="audit")
    r.add_get("/admin/settings", views.settings_page, name="settings")
    r.add_post("/admin/settings", views.settings_submit, name="settings_submit")

    r.add_get("/api/v1/health", api.health, name="api_health")
    r.add_get("/api/v1/csrf", api.csrf, name="api_csrf")
    r.add_get("/api/v1/setup", api.setup_status, name="api_setup")
    r.add_post("/api/v1/setup/token", api.setup_token, name="api_setup_token")
    r.add_post("/api/v1/setup/admin", api.setup_admin, name="api_setup_admin")
    r.add_post("/api/v1/session", api.session_create, name="api_session_create")
    r.add_get("/api/v1/session", api.session_get, name="api_session")
    r.add_delete("/api/v1/session", api.session_delete, name="api_session_delete")
    r.add_delete("/api/v1/sessions", api.sessions_delete_all, name="api_sessions_delete")
    r.add_get("/api/v1/tokens", api.tokens_list, name="api_tokens")
    r.add_post("/api/v1/tokens", api.tokens_create, name="api_tokens_create")
    r.add_delete("/api/v1/tokens/{token_id}", api.tokens_delete, name="api_tokens_delete")
    r.add_get("/api/v1/users", api.users_list, name="api_users")
    r.add_get("/api/v1/audit", api.audit_list, name="api_audit")
    r.add_get("/api/v1/appliance", api.appliance_get, name="api_appliance")
    r.add_put("/api/v1/appliance", api.appliance_put, name="api_appliance_put")

    r.add_get("/pools", pools.pools_page, name="pools")
    r.add_post("/pools", pools.pools_submit, name="pools_submit")
    r.add_post(r"/pools/{pool_id:\d+}/remove", pools.pools_remove, name="pools_remove")
    r.add_get("/api/v1/pools", pools.api_pools, name="api_pools")
    r.add_post("/api/v1/pools", pools.api_pools_add, name="api_pools_add")
    r.add_post("/api/v1/pools/probe", pools.api_pools_probe, name="api_pools_probe")
    r.add_get("/api/v1/pools/overview", pools.api_overview, name="api_pools_overview")
    r.add_get(r"/api/v1/pools/{pool_id:\d+}", pools.api_pool, name="api_pool")
    r.add_delete(r"/api/v1/pools/{pool_id:\d+}", pools.api_pools_delete, name="api_pool_delete")
    r.add_get("/api/v1/events", pools.api_events, name="api_events")

    setup_operation_routes(app)
    setup_backup_routes(app)

    r.add_static("/static/", static_dir, name="static")
