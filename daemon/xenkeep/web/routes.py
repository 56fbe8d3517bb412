"""The route table: every route of the daemon, named, in one place.

Each handler declares its permission where it is defined (deny by
default, checked in one place: see :mod:`.access`); templates and
redirects use the names.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from xenkeep.web import api, setup, views
from xenkeep.web.account import api as account_api
from xenkeep.web.account import views as account_views
from xenkeep.web.appliance_backup import api as appliance_backup_api
from xenkeep.web.appliance_backup import views as appliance_backup_views
from xenkeep.web.auth_providers import api as providers_api
from xenkeep.web.auth_providers import views as providers_views
from xenkeep.web.backup import api as backup_api
from xenkeep.web.backup import views as backup_views
from xenkeep.web.diagnostics import api as diagnostics_api
from xenkeep.web.diagnostics import views as diagnostics_views
from xenkeep.web.network import api as network_api
from xenkeep.web.network import views as network_views
from xenkeep.web.operations import api as operations_api
from xenkeep.web.operations import views as operations_views
from xenkeep.web.people import api as people_api
from xenkeep.web.people import views as people_views
from xenkeep.web.pools import api as pools_api
from xenkeep.web.pools import views as pools_views
from xenkeep.web.replication import api as replication_api
from xenkeep.web.replication import views as replication_views
from xenkeep.web.selfservice import api as self_api
from xenkeep.web.selfservice import views as self_views


def _account_routes(r: web.UrlDispatcher) -> None:
    """Every user's own account: password, two-factor, recovery codes, sessions, tokens."""
    r.add_get("/account", account_views.account_page, name="account")
    r.add_get("/account/password", account_views.account_password, name="account_password")
    r.add_post(
        "/account/password", account_views.account_password_submit, name="account_password_submit"
    )
    r.add_get("/account/totp", account_views.account_totp, name="account_totp")
    r.add_post("/account/totp", account_views.account_totp_submit, name="account_totp_submit")
    r.add_post(
        "/account/recovery-codes",
        account_views.account_recovery_codes,
        name="account_recovery_codes",
    )
    r.add_post(
        "/account/sessions/{session_id}/revoke",
        account_views.account_session_revoke,
        name="account_session_revoke",
    )
    r.add_post("/account/tokens", account_views.account_token_create, name="account_token_create")
    r.add_post(
        "/account/tokens/{token_id}/revoke",
        account_views.account_token_revoke,
        name="account_token_revoke",
    )
    r.add_post(
        "/account/sign-out-all", account_views.account_sign_out_all, name="account_sign_out_all"
    )
    r.add_post(
        "/account/ssh-keys", account_views.account_ssh_key_create, name="account_ssh_key_create"
    )
    r.add_post(
        r"/account/ssh-keys/{key_id:\d+}/remove",
        account_views.account_ssh_key_delete,
        name="account_ssh_key_delete",
    )
    r.add_get("/api/v1/account", account_api.api_account, name="api_account")
    r.add_put(
        "/api/v1/account/password", account_api.api_account_password, name="api_account_password"
    )
    r.add_post("/api/v1/account/totp", account_api.api_account_totp, name="api_account_totp")
    r.add_post(
        "/api/v1/account/totp/confirm",
        account_api.api_account_totp_confirm,
        name="api_account_totp_confirm",
    )
    r.add_post(
        "/api/v1/account/recovery-codes",
        account_api.api_account_recovery_codes,
        name="api_account_recovery_codes",
    )
    r.add_get(
        "/api/v1/account/sessions", account_api.api_account_sessions, name="api_account_sessions"
    )
    r.add_delete(
        "/api/v1/account/sessions/{session_id}",
        account_api.api_account_session_delete,
        name="api_account_session_delete",
    )


def _people_routes(r: web.UrlDispatcher) -> None:
    """Users, groups and grants, for super-administrators."""
    user = r"/admin/users/{user_id:\d+}"
    group = r"/admin/groups/{group_id:\d+}"
    r.add_get("/admin/users", people_views.users_page, name="people_users")
    r.add_post("/admin/users", people_views.user_create, name="people_user_create")
    r.add_get(user, people_views.user_page, name="people_user")
    r.add_post(user, people_views.user_update, name="people_user_update")
    r.add_post(user + "/disable", people_views.user_disable, name="people_user_disable")
    r.add_post(user + "/enable", people_views.user_enable, name="people_user_enable")
    r.add_post(user + "/password", people_views.user_password, name="people_user_password")
    r.add_get(user + "/delete", people_views.user_delete_page, name="people_user_delete_page")
    r.add_post(user + "/delete", people_views.user_delete, name="people_user_delete")
    r.add_post(user + "/groups", people_views.user_group_add, name="people_user_group_add")
    r.add_get("/admin/groups", people_views.groups_page, name="people_groups")
    r.add_post("/admin/groups", people_views.group_create, name="people_group_create")
    r.add_get(group, people_views.group_page, name="people_group")
    r.add_post(group, people_views.group_update, name="people_group_update")
    r.add_post(group + "/members", people_views.group_member_add, name="people_group_member_add")
    r.add_post(
        group + r"/members/{user_id:\d+}/remove",
        people_views.group_member_remove,
        name="people_group_member_remove",
    )
    r.add_get(group + "/delete", people_views.group_delete_page, name="people_group_delete_page")
    r.add_post(group + "/delete", people_views.group_delete, name="people_group_delete")
    r.add_get("/admin/grants", people_views.grants_page, name="people_grants")
    r.add_post("/admin/grants", people_views.grant_create, name="people_grant_create")
    r.add_post(
        r"/admin/grants/{grant_id:\d+}/remove",
        people_views.grant_remove,
        name="people_grant_remove",
    )

    api_user = r"/api/v1/users/{user_id:\d+}"
    api_group = r"/api/v1/groups/{group_id:\d+}"
    r.add_get("/api/v1/users", people_api.api_users, name="api_users")
    r.add_post("/api/v1/users", people_api.api_user_create, name="api_user_create")
    r.add_get(api_user, people_api.api_user, name="api_user")
    r.add_patch(api_user, people_api.api_user_update, name="api_user_update")
    r.add_delete(api_user, people_api.api_user_delete, name="api_user_delete")
    r.add_post(api_user + "/password", people_api.api_user_password, name="api_user_password")
    r.add_get("/api/v1/groups", people_api.api_groups, name="api_groups")
    r.add_post("/api/v1/groups", people_api.api_group_create, name="api_group_create")
    r.add_get(api_group, people_api.api_group, name="api_group")
    r.add_patch(api_group, people_api.api_group_update, name="api_group_update")
    r.add_delete(api_group, people_api.api_group_delete, name="api_group_delete")
    r.add_post(api_group + "/members", people_api.api_group_member_add, name="api_group_member_add")
    r.add_delete(
        api_group + r"/members/{user_id:\d+}",
        people_api.api_group_member_delete,
        name="api_group_member_delete",
    )
    r.add_get("/api/v1/grants", people_api.api_grants, name="api_grants")
    r.add_post("/api/v1/grants", people_api.api_grant_create, name="api_grant_create")
    r.add_get("/api/v1/grants/objects", people_api.api_grant_objects, name="api_grant_objects")
    r.add_delete(
        r"/api/v1/grants/{grant_id:\d+}", people_api.api_grant_delete, name="api_grant_delete"
    )


def _self_service_routes(r: web.UrlDispatcher) -> None:
    """SSH keys, resource sets and members' VMs."""
    r.add_get("/self", self_views.self_page, name="self")
    r.add_post("/self/vms", self_views.self_create, name="self_create")
    r.add_post("/self/vms/{vm_uuid}/power", self_views.self_vm_power, name="self_vm_power")
    r.add_get(
        "/self/vms/{vm_uuid}/delete", self_views.self_vm_delete_page, name="self_vm_delete_page"
    )
    r.add_post("/self/vms/{vm_uuid}/delete", self_views.self_vm_delete, name="self_vm_delete")
    r.add_get("/admin/resource-sets", self_views.resource_sets_page, name="resource_sets")
    r.add_post("/admin/resource-sets", self_views.resource_set_create, name="resource_set_create")
    page = "/admin/resource-sets/{set_id}"
    r.add_get(page, self_views.resource_set_page, name="resource_set")
    r.add_post(page, self_views.resource_set_update, name="resource_set_update")
    r.add_get(
        page + "/delete", self_views.resource_set_delete_page, name="resource_set_delete_page"
    )
    r.add_post(page + "/delete", self_views.resource_set_delete, name="resource_set_delete")
    r.add_get("/api/v1/account/ssh-keys", self_api.api_ssh_keys, name="api_ssh_keys")
    r.add_post("/api/v1/account/ssh-keys", self_api.api_ssh_key_create, name="api_ssh_key_create")
    r.add_delete(
        r"/api/v1/account/ssh-keys/{key_id:\d+}",
        self_api.api_ssh_key_delete,
        name="api_ssh_key_delete",
    )
    one_set = r"/api/v1/resource-sets/{set_id:\d+}"
    r.add_get("/api/v1/resource-sets", self_api.api_resource_sets, name="api_resource_sets")
    r.add_post(
        "/api/v1/resource-sets", self_api.api_resource_set_create, name="api_resource_set_create"
    )
    r.add_get(one_set, self_api.api_resource_set, name="api_resource_set")
    r.add_put(one_set, self_api.api_resource_set_update, name="api_resource_set_update")
    r.add_delete(one_set, self_api.api_resource_set_delete, name="api_resource_set_delete")
    r.add_get("/api/v1/self/usage", self_api.api_self_usage, name="api_self_usage")
    r.add_get("/api/v1/self/vms", self_api.api_self_vms, name="api_self_vms")
    r.add_post("/api/v1/self/vms", self_api.api_self_vm_create, name="api_self_vm_create")
    vm = "/api/v1/self/vms/{vm_uuid}"
    r.add_post(vm + "/start", self_api.api_self_vm_start, name="api_self_vm_start")
    r.add_post(vm + "/stop", self_api.api_self_vm_stop, name="api_self_vm_stop")
    r.add_post(vm + "/reboot", self_api.api_self_vm_reboot, name="api_self_vm_reboot")
    r.add_get(vm + "/console", self_api.api_self_vm_console, name="api_self_vm_console")
    r.add_delete(vm, self_api.api_self_vm_delete, name="api_self_vm_delete")


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
    _account_routes(r)
    _people_routes(r)
    _self_service_routes(r)
    r.add_get("/admin/audit", views.audit_page, name="audit")
    r.add_get("/admin/settings", views.settings_page, name="settings")
    r.add_post("/admin/settings", views.settings_submit, name="settings_submit")
    r.add_get("/admin/network", network_views.network_page, name="network")
    r.add_post("/admin/network", network_views.network_submit, name="network_submit")
    r.add_post("/admin/network/ntp", network_views.network_ntp_submit, name="network_ntp_submit")
    r.add_post("/admin/network/keep", network_views.network_keep, name="network_keep")
    r.add_post("/admin/network/revert", network_views.network_revert, name="network_revert")

    # Sign-in providers: signing in through one, administering them.
    r.add_get("/auth/{slug}/start", providers_views.provider_start, name="auth_start")
    r.add_get("/auth/{slug}/callback", providers_views.provider_callback, name="auth_callback")
    r.add_post(
        "/auth/{slug}/callback", providers_views.provider_callback, name="auth_callback_post"
    )
    r.add_get("/auth/{slug}/metadata", providers_views.provider_metadata, name="auth_metadata")
    r.add_get("/admin/providers", providers_views.providers_page, name="auth_providers")
    r.add_post(
        "/admin/providers/settings",
        providers_views.providers_settings,
        name="auth_providers_settings",
    )
    r.add_get("/admin/providers/new", providers_views.provider_new, name="auth_provider_new")
    r.add_post("/admin/providers", providers_views.provider_create, name="auth_provider_create")
    r.add_get(
        r"/admin/providers/{provider_id:\d+}", providers_views.provider_edit, name="auth_provider"
    )
    r.add_post(
        r"/admin/providers/{provider_id:\d+}",
        providers_views.provider_update,
        name="auth_provider_update",
    )
    r.add_post(
        r"/admin/providers/{provider_id:\d+}/mappings",
        providers_views.provider_mappings,
        name="auth_provider_mappings",
    )
    r.add_post(
        r"/admin/providers/{provider_id:\d+}/test",
        providers_views.provider_test,
        name="auth_provider_test",
    )
    r.add_get(
        r"/admin/providers/{provider_id:\d+}/delete",
        providers_views.provider_delete_page,
        name="auth_provider_delete_page",
    )
    r.add_post(
        r"/admin/providers/{provider_id:\d+}/delete",
        providers_views.provider_delete,
        name="auth_provider_delete",
    )
    r.add_get(
        "/api/v1/auth/provider-types", providers_api.api_provider_types, name="api_provider_types"
    )
    r.add_get("/api/v1/auth/providers", providers_api.api_providers, name="api_providers")
    r.add_post(
        "/api/v1/auth/providers", providers_api.api_provider_create, name="api_provider_create"
    )
    r.add_put(
        "/api/v1/auth/providers/settings",
        providers_api.api_providers_settings,
        name="api_providers_settings",
    )
    r.add_get(
        r"/api/v1/auth/providers/{provider_id:\d+}",
        providers_api.api_provider,
        name="api_provider",
    )
    r.add_put(
        r"/api/v1/auth/providers/{provider_id:\d+}",
        providers_api.api_provider_update,
        name="api_provider_update",
    )
    r.add_delete(
        r"/api/v1/auth/providers/{provider_id:\d+}",
        providers_api.api_provider_delete,
        name="api_provider_delete",
    )
    r.add_post(
        r"/api/v1/auth/providers/{provider_id:\d+}/test",
        providers_api.api_provider_test,
        name="api_provider_test",
    )

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
    r.add_get("/api/v1/audit", api.audit_list, name="api_audit")
    r.add_get("/api/v1/appliance", api.appliance_get, name="api_appliance")
    r.add_put("/api/v1/appliance", api.appliance_put, name="api_appliance_put")
    r.add_get("/api/v1/network", network_api.api_network, name="api_network")
    r.add_put("/api/v1/network", network_api.api_network_put, name="api_network_put")
    r.add_put("/api/v1/network/ntp", network_api.api_network_ntp_put, name="api_network_ntp_put")
    r.add_post(
        "/api/v1/network/confirm", network_api.api_network_confirm, name="api_network_confirm"
    )
    r.add_post("/api/v1/network/revert", network_api.api_network_revert, name="api_network_revert")

    r.add_get("/pools", pools_views.pools_page, name="pools")
    r.add_post("/pools", pools_views.pools_submit, name="pools_submit")
    r.add_get(
        r"/pools/{pool_id:\d+}/remove", pools_views.pools_remove_page, name="pools_remove_page"
    )
    r.add_post(r"/pools/{pool_id:\d+}/remove", pools_views.pools_remove, name="pools_remove")
    r.add_get("/api/v1/pools", pools_api.api_pools, name="api_pools")
    r.add_post("/api/v1/pools", pools_api.api_pools_add, name="api_pools_add")
    r.add_post("/api/v1/pools/probe", pools_api.api_pools_probe, name="api_pools_probe")
    r.add_get("/api/v1/pools/overview", pools_api.api_overview, name="api_pools_overview")
    r.add_get(r"/api/v1/pools/{pool_id:\d+}", pools_api.api_pool, name="api_pool")
    r.add_delete(r"/api/v1/pools/{pool_id:\d+}", pools_api.api_pools_delete, name="api_pool_delete")
    r.add_get("/api/v1/events", pools_api.api_events, name="api_events")

    # Every long task, whatever its kind.
    r.add_get("/operations", operations_views.operations_page, name="operations")
    r.add_get(r"/operations/{op_id:\d+}", operations_views.operation_page, name="operation")
    r.add_post(
        r"/operations/{op_id:\d+}/cancel",
        operations_views.operation_cancel,
        name="operation_cancel",
    )
    r.add_get("/api/v1/operations", operations_api.api_operations, name="api_operations")
    r.add_get(r"/api/v1/operations/{op_id:\d+}", operations_api.api_operation, name="api_operation")
    r.add_get(
        r"/api/v1/operations/{op_id:\d+}/events",
        operations_api.api_operation_events,
        name="api_operation_events",
    )
    r.add_post(
        r"/api/v1/operations/{op_id:\d+}/cancel",
        operations_api.api_operation_cancel,
        name="api_operation_cancel",
    )

    # Backups.
    r.add_get("/backup", backup_views.backup_page, name="backup")
    r.add_get("/backup/storage", backup_views.storage_page, name="backup_storage")
    r.add_post("/backup/storage", backup_views.storage_submit, name="backup_storage_submit")
    r.add_post("/backup/verify", backup_views.verify_submit, name="backup_verify")
    r.add_post("/backup/disks/detach", backup_views.disk_detach, name="backup_disk_detach")
    r.add_post("/backup/disks/{device}/format", backup_views.disk_format, name="backup_disk_format")
    r.add_post("/backup/disks/{device}/attach", backup_views.disk_attach, name="backup_disk_attach")
    r.add_post(
        "/backup/verify/schedule",
        backup_views.verify_schedule_submit,
        name="backup_verify_schedule",
    )
    r.add_get("/backup/jobs/new", backup_views.job_new, name="backup_job_new")
    r.add_post("/backup/jobs", backup_views.job_create, name="backup_job_create")
    r.add_get("/backup/jobs/{job_id}", backup_views.job_page, name="backup_job")
    r.add_get("/backup/jobs/{job_id}/edit", backup_views.job_edit, name="backup_job_edit")
    r.add_post("/backup/jobs/{job_id}", backup_views.job_update, name="backup_job_update")
    r.add_get(
        "/backup/jobs/{job_id}/delete", backup_views.job_delete_page, name="backup_job_delete_page"
    )
    r.add_post("/backup/jobs/{job_id}/delete", backup_views.job_delete, name="backup_job_delete")
    r.add_post("/backup/jobs/{job_id}/run", backup_views.job_run, name="backup_job_run")
    r.add_post("/backup/jobs/{job_id}/prune", backup_views.job_prune, name="backup_job_prune")
    r.add_get(
        "/backup/vms/{vm_uuid}/points/{point_id}/delete",
        backup_views.point_delete_page,
        name="backup_point_delete_page",
    )
    r.add_post(
        "/backup/vms/{vm_uuid}/points/{point_id}/delete",
        backup_views.point_delete,
        name="backup_point_delete",
    )
    r.add_post(
        "/backup/vms/{vm_uuid}/points/{point_id}/health-check",
        backup_views.health_check_submit,
        name="backup_health_check",
    )
    r.add_get(
        "/backup/vms/{vm_uuid}/delete",
        backup_views.vm_points_delete_page,
        name="backup_vm_delete_page",
    )
    r.add_post(
        "/backup/vms/{vm_uuid}/delete", backup_views.vm_points_delete, name="backup_vm_delete"
    )
    # A run is an operation: its page is the operation page.
    r.add_get(r"/backup/runs/{run_id:\d+}", operations_views.run_page, name="backup_run")
    r.add_post("/backup/runs/{run_id}/cancel", backup_views.run_cancel, name="backup_run_cancel")
    r.add_get("/backup/mail", backup_views.mail_page, name="backup_mail")
    r.add_post("/backup/mail", backup_views.mail_submit, name="backup_mail_submit")
    r.add_post("/backup/mail/test", backup_views.mail_test, name="backup_mail_test")
    r.add_get("/backup/restore", backup_views.restore_page, name="backup_restore")
    r.add_post("/backup/restore", backup_views.restore_submit, name="backup_restore_submit")

    r.add_get("/api/v1/backup/storage", backup_api.api_storage, name="api_backup_storage")
    r.add_get("/api/v1/backup/verify", backup_api.api_verify, name="api_backup_verify")
    r.add_post("/api/v1/backup/verify", backup_api.api_verify_start, name="api_backup_verify_start")
    r.add_get(
        "/api/v1/backup/verify/schedule",
        backup_api.api_verify_schedule,
        name="api_backup_verify_schedule",
    )
    r.add_put(
        "/api/v1/backup/verify/schedule",
        backup_api.api_verify_schedule_put,
        name="api_backup_verify_schedule_put",
    )
    r.add_post(
        "/api/v1/backup/storage", backup_api.api_storage_init, name="api_backup_storage_init"
    )
    r.add_get("/api/v1/backup/disks", backup_api.api_disks, name="api_backup_disks")
    r.add_post(
        "/api/v1/backup/disks/detach", backup_api.api_disk_detach, name="api_backup_disk_detach"
    )
    r.add_post(
        "/api/v1/backup/disks/{device}/format",
        backup_api.api_disk_format,
        name="api_backup_disk_format",
    )
    r.add_post(
        "/api/v1/backup/disks/{device}/attach",
        backup_api.api_disk_attach,
        name="api_backup_disk_attach",
    )
    r.add_get("/api/v1/backup/jobs", backup_api.api_jobs, name="api_backup_jobs")
    r.add_post("/api/v1/backup/jobs", backup_api.api_job_create, name="api_backup_job_create")
    r.add_get("/api/v1/backup/jobs/{job_id}", backup_api.api_job, name="api_backup_job")
    r.add_get(
        "/api/v1/backup/jobs/{job_id}/overview",
        backup_api.api_job_overview,
        name="api_backup_job_overview",
    )
    r.add_get("/api/v1/backup/overview", backup_api.api_overview, name="api_backup_overview")
    r.add_put(
        "/api/v1/backup/jobs/{job_id}", backup_api.api_job_update, name="api_backup_job_update"
    )
    r.add_delete(
        "/api/v1/backup/jobs/{job_id}", backup_api.api_job_delete, name="api_backup_job_delete"
    )
    r.add_post(
        "/api/v1/backup/jobs/{job_id}/run", backup_api.api_job_run, name="api_backup_job_run"
    )
    r.add_get("/api/v1/backup/runs", backup_api.api_runs, name="api_backup_runs")
    r.add_get("/api/v1/backup/runs/{run_id}", backup_api.api_run, name="api_backup_run")
    r.add_get(
        "/api/v1/backup/runs/{run_id}/events",
        backup_api.api_run_events,
        name="api_backup_run_events",
    )
    r.add_post(
        "/api/v1/backup/runs/{run_id}/cancel",
        backup_api.api_run_cancel,
        name="api_backup_run_cancel",
    )
    r.add_get("/api/v1/backup/vms", backup_api.api_vms, name="api_backup_vms")
    r.add_get(
        "/api/v1/backup/vms/{vm_uuid}/points", backup_api.api_points, name="api_backup_points"
    )
    r.add_delete(
        "/api/v1/backup/vms/{vm_uuid}/points/{point_id}",
        backup_api.api_point_delete,
        name="api_backup_point_delete",
    )
    r.add_post(
        "/api/v1/backup/vms/{vm_uuid}/points/delete",
        backup_api.api_points_delete,
        name="api_backup_points_delete",
    )
    r.add_post(
        "/api/v1/backup/vms/{vm_uuid}/points/{point_id}/health-check",
        backup_api.api_health_check,
        name="api_backup_health_check",
    )
    r.add_post(
        "/api/v1/backup/jobs/{job_id}/prune", backup_api.api_job_prune, name="api_backup_job_prune"
    )
    r.add_post("/api/v1/backup/restore", backup_api.api_restore, name="api_backup_restore")
    r.add_get("/api/v1/backup/smtp", backup_api.api_smtp, name="api_backup_smtp")
    r.add_put("/api/v1/backup/smtp", backup_api.api_smtp_put, name="api_backup_smtp_put")
    r.add_post("/api/v1/backup/smtp/test", backup_api.api_smtp_test, name="api_backup_smtp_test")

    # The appliance's own backup: its configuration and pool databases in the storage.
    ab, ab_api = appliance_backup_views, appliance_backup_api
    r.add_get("/backup/appliance", ab.appliance_backup_page, name="appliance_backup")
    r.add_post(
        "/backup/appliance/passphrase", ab.passphrase_submit, name="appliance_backup_passphrase"
    )
    r.add_post(
        "/backup/appliance/recovery-key",
        ab.recovery_key_submit,
        name="appliance_backup_recovery_key",
    )
    r.add_post(
        "/backup/appliance/retention", ab.retention_submit, name="appliance_backup_retention"
    )
    r.add_post("/backup/appliance/run", ab.run_submit, name="appliance_backup_run")
    r.add_post("/backup/appliance/open", ab.open_submit, name="appliance_backup_open")
    r.add_post("/backup/appliance/discard", ab.discard_submit, name="appliance_backup_discard")
    r.add_post("/backup/appliance/restore", ab.restore_submit, name="appliance_backup_restore")
    r.add_get(
        "/backup/appliance/pools/{pool_uuid}/{copy_id}",
        ab.pool_dump_download,
        name="appliance_backup_pool_dump",
    )
    r.add_get("/api/v1/appliance-backup", ab_api.api_status, name="api_appliance_backup")
    r.add_put(
        "/api/v1/appliance-backup/passphrase",
        ab_api.api_passphrase,
        name="api_appliance_backup_passphrase",
    )
    r.add_post(
        "/api/v1/appliance-backup/recovery-key",
        ab_api.api_recovery_key,
        name="api_appliance_backup_recovery_key",
    )
    r.add_put(
        "/api/v1/appliance-backup/retention",
        ab_api.api_retention,
        name="api_appliance_backup_retention",
    )
    r.add_post("/api/v1/appliance-backup/run", ab_api.api_run, name="api_appliance_backup_run")
    r.add_get(
        "/api/v1/appliance-backup/copies", ab_api.api_copies, name="api_appliance_backup_copies"
    )
    r.add_post(
        "/api/v1/appliance-backup/copies/{copy_id}/open",
        ab_api.api_open,
        name="api_appliance_backup_open",
    )
    r.add_post(
        "/api/v1/appliance-backup/restore", ab_api.api_restore, name="api_appliance_backup_restore"
    )
    r.add_get(
        "/api/v1/appliance-backup/pools/{pool_uuid}/{copy_id}",
        ab_api.api_pool_dump,
        name="api_appliance_backup_pool_dump",
    )

    # Diagnostics: health checks, the journal, the support bundle.
    r.add_get("/diagnostics", diagnostics_views.diagnostics_page, name="diagnostics")
    r.add_post("/diagnostics/run", diagnostics_views.diagnostics_run, name="diagnostics_run")
    r.add_get("/diagnostics/logs", diagnostics_views.logs_page, name="diagnostics_logs")
    r.add_get("/api/v1/diagnostics", diagnostics_api.api_diagnostics, name="api_diagnostics")
    r.add_post(
        "/api/v1/diagnostics/run", diagnostics_api.api_diagnostics_run, name="api_diagnostics_run"
    )
    r.add_get(
        "/api/v1/diagnostics/bundle",
        diagnostics_api.api_diagnostics_bundle,
        name="api_diagnostics_bundle",
    )
    r.add_get("/api/v1/logs", diagnostics_api.api_logs, name="api_logs")

    _replication_routes(r)
    r.add_static("/static/", static_dir, name="static")


def _replication_routes(r: web.UrlDispatcher) -> None:
    """Replication: pages under /replication, the API under /api/v1/replication/.
    Each route's object is its ``job_id`` or ``replica_id``."""
    job = r"{job_id:\d+}"
    replica = r"{replica_id:\d+}"
    r.add_get("/replication", replication_views.replication_page, name="replication")
    r.add_get("/replication/jobs/new", replication_views.job_new, name="replication_job_new")
    r.add_post("/replication/jobs", replication_views.job_create, name="replication_job_create")
    r.add_get(f"/replication/jobs/{job}", replication_views.job_page, name="replication_job")
    r.add_get(
        f"/replication/jobs/{job}/edit", replication_views.job_edit, name="replication_job_edit"
    )
    r.add_post(
        f"/replication/jobs/{job}", replication_views.job_update, name="replication_job_update"
    )
    r.add_post(
        f"/replication/jobs/{job}/delete",
        replication_views.job_delete,
        name="replication_job_delete",
    )
    r.add_post(
        f"/replication/jobs/{job}/run", replication_views.job_run, name="replication_job_run"
    )
    r.add_get(
        f"/replication/replicas/{replica}/start",
        replication_views.replica_start_page,
        name="replication_replica_start_page",
    )
    r.add_post(
        f"/replication/replicas/{replica}/start",
        replication_views.replica_start,
        name="replication_replica_start",
    )
    r.add_get(
        f"/replication/replicas/{replica}/failback",
        replication_views.replica_failback_page,
        name="replication_replica_failback_page",
    )
    r.add_post(
        f"/replication/replicas/{replica}/failback",
        replication_views.replica_failback,
        name="replication_replica_failback",
    )

    api = "/api/v1/replication"
    r.add_get(f"{api}/jobs", replication_api.api_jobs, name="api_replication_jobs")
    r.add_post(f"{api}/jobs", replication_api.api_job_create, name="api_replication_job_create")
    r.add_get(f"{api}/jobs/{job}", replication_api.api_job, name="api_replication_job")
    r.add_put(
        f"{api}/jobs/{job}", replication_api.api_job_update, name="api_replication_job_update"
    )
    r.add_delete(
        f"{api}/jobs/{job}", replication_api.api_job_delete, name="api_replication_job_delete"
    )
    r.add_post(f"{api}/jobs/{job}/run", replication_api.api_job_run, name="api_replication_job_run")
    r.add_get(f"{api}/runs", replication_api.api_runs, name="api_replication_runs")
    r.add_get(f"{api}/replicas", replication_api.api_replicas, name="api_replication_replicas")
    r.add_get(
        f"{api}/replicas/{replica}", replication_api.api_replica, name="api_replication_replica"
    )
    r.add_delete(
        f"{api}/replicas/{replica}",
        replication_api.api_replica_delete,
        name="api_replication_replica_delete",
    )
    r.add_get(
        f"{api}/replicas/{replica}/points",
        replication_api.api_replica_points,
        name="api_replication_replica_points",
    )
    r.add_post(
        f"{api}/replicas/{replica}/start",
        replication_api.api_replica_start,
        name="api_replication_replica_start",
    )
    r.add_post(
        f"{api}/replicas/{replica}/failback",
        replication_api.api_replica_failback,
        name="api_replication_replica_failback",
    )
