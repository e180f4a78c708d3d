/*-------------------------------------------------------------------------
 *
 * auth_hooks.c
 *		Login, failed login and logout events, queued for the worker.
 *
 * - ClientAuthentication_hook: sees the outcome of every authentication
 *   exchange (password, SCRAM, trust, ...).  A failure is LOGIN_FAILED at
 *   once.  A success is kept pending: InitPostgres may still refuse the
 *   session (unknown role under trust, role without LOGIN, missing
 *   database, no CONNECT privilege, too many connections).  LOGIN is queued
 *   when InitPostgres commits its start-up transaction (our xact callback
 *   calls audit_auth_xact_commit), i.e. once the session really exists.
 * - emit_log_hook: FATAL errors raised while ClientAuthInProgress that the
 *   hook above never sees (pg_hba.conf "reject" or no matching line,
 *   authentication timeout), and FATAL errors while a LOGIN is pending:
 *   LOGIN_FAILED with the message and SQLSTATE.  A failure the
 *   authentication hook recorded is not recorded twice.
 * - before_shmem_exit callback of a session that logged in: LOGOUT with the
 *   session's duration.
 *
 * These run before any transaction exists (or while the process exits), so
 * they only fill a fixed-size record and hand it to the shared queue; they
 * never raise an error and allocate nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netdb.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "common/ip.h"
#include "libpq/auth.h"
#include "libpq/hba.h"
#include "libpq/libpq-be.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;

static bool failure_recorded = false;	/* this process queued LOGIN_FAILED */
static bool login_recorded = false;
static bool login_pending = false;	/* authenticated, session not started yet */
static AuditQueueEntry pending_login;
static bool in_log_hook = false;

/* A queue record with the connection's context; allocates nothing. */
void
audit_fill_entry_from_port(AuditQueueEntry *e, Port *port,
						   const char *class_name, const char *action,
						   bool failure)
{
	memset(e, 0, sizeof(*e));
	strlcpy(e->class_name, class_name, sizeof(e->class_name));
	strlcpy(e->action, action, sizeof(e->action));
	e->failure = failure;
	e->event_time = GetCurrentTimestamp();
	e->backend_pid = MyProcPid;
	/* 1.6: the application's context set in this session, if any */
	audit_context_for_queue(e->context, sizeof(e->context));
	if (port == NULL)
		return;
	if (port->user_name)
		audit_strlcpy_utf8(e->user_name, port->user_name, sizeof(e->user_name));
	if (port->database_name)
		audit_strlcpy_utf8(e->database_name, port->database_name, sizeof(e->database_name));
	if (port->application_name)
		audit_strlcpy_utf8(e->application_name, port->application_name,
						   sizeof(e->application_name));
	if (port->raddr.addr.ss_family == AF_INET
#ifdef HAVE_IPV6
		|| port->raddr.addr.ss_family == AF_INET6
#endif
		)
	{
		if (pg_getnameinfo_all(&port->raddr.addr, port->raddr.salen,
							   e->client_addr, sizeof(e->client_addr),
							   NULL, 0, NI_NUMERICHOST) != 0)
			e->client_addr[0] = '\0';
	}
}

/*
 * A queue record made by a session about itself (settings that weaken the
 * trail, actor changes, limits reached): the connection's context, and in a
 * transaction the current and session user and the database.  False when
 * nothing can be queued here (no shared memory, a parallel worker).
 */
bool
audit_fill_entry_for_session(AuditQueueEntry *e, const char *class_name,
							 const char *action, bool failure)
{
	if (!audit_queue_available() || IsParallelWorker())
		return false;
	audit_fill_entry_from_port(e, MyProcPort, class_name, action, failure);
	if (IsTransactionState())
	{
		char	   *u = GetUserNameFromId(GetUserId(), true);
		char	   *su = GetUserNameFromId(GetSessionUserId(), true);

		if (u)
			strlcpy(e->user_name, u, sizeof(e->user_name));
		if (su)
			strlcpy(e->session_user_name, su, sizeof(e->session_user_name));
		if (e->database_name[0] == '\0' && OidIsValid(MyDatabaseId))
		{
			char	   *d = get_database_name(MyDatabaseId);

			if (d)
				strlcpy(e->database_name, d, sizeof(e->database_name));
		}
	}
	return true;
}

/*
 * The running statement's context for a queue record made in a backend
 * (refused statements, reads): statement time, current and session user,
 * audit_ext.actor and the statement text, each cut to its field on a
 * character boundary.
 */
void
audit_fill_entry_from_statement(AuditQueueEntry *e, const char *query)
{
	e->event_time = GetCurrentStatementStartTimestamp();
	strlcpy(e->user_name, GetUserNameFromId(GetUserId(), false),
			sizeof(e->user_name));
	strlcpy(e->session_user_name, GetUserNameFromId(GetSessionUserId(), false),
			sizeof(e->session_user_name));
	if (audit_actor && audit_actor[0] != '\0')
	{
		int			len = pg_mbcliplen(audit_actor, strlen(audit_actor),
									   sizeof(e->actor) - 1);

		memcpy(e->actor, audit_actor, len);
		e->actor[len] = '\0';
	}
	if (query && audit_log_statement_text)
	{
		int			len = pg_mbcliplen(query, strlen(query),
									   Min(sizeof(e->statement) - 1,
										   audit_max_statement_length));

		memcpy(e->statement, query, len);
		e->statement[len] = '\0';
		e->redact_statement = (audit_statement_literals == AUDIT_LITERALS_REDACT);
	}
}

static bool
is_password_method(UserAuth method)
{
	return method == uaPassword || method == uaMD5 || method == uaSCRAM;
}

/* Session end: LOGOUT with the session's duration. */
static void
audit_logout(int code, Datum arg)
{
	AuditQueueEntry e;
	long		secs;
	int			usecs;
	char		interval[64];
	char		seconds[64];
	const char *keys[] = {"duration", "duration_seconds"};
	const char *vals[] = {interval, seconds};
	const bool	raw[] = {false, true};

	if (!login_recorded)
		return;
	audit_fill_entry_from_port(&e, MyProcPort, "auth", "LOGOUT", false);
	TimestampDifference(MyStartTimestamp, e.event_time, &secs, &usecs);
	/* interval text as interval_out shows it under IntervalStyle postgres */
	snprintf(interval, sizeof(interval), "%02ld:%02ld:%02ld.%06d",
			 secs / 3600, (secs / 60) % 60, secs % 60, usecs);
	snprintf(seconds, sizeof(seconds), "%ld.%06d", secs, usecs);
	audit_json_object(e.detail, sizeof(e.detail), 2, keys, vals, raw);
	(void) audit_queue_enqueue(&e);
}

static void
audit_client_authentication(Port *port, int status)
{
	if (prev_ClientAuthentication)
		prev_ClientAuthentication(port, status);

	/* STATUS_EOF: the client went away (psql asking for a password) */
	if (status == STATUS_EOF || !audit_queue_available())
		return;

	if (status == STATUS_OK)
	{
		const char *keys[] = {"method"};
		const char *vals[] = {hba_authname(port->hba->auth_method)};
		const bool	raw[] = {false};

		audit_fill_entry_from_port(&pending_login, port, "auth", "LOGIN", false);
		audit_json_object(pending_login.detail, sizeof(pending_login.detail),
						  1, keys, vals, raw);
		login_pending = true;
	}
	else
	{
		AuditQueueEntry e;
		char		reason[128];
		const char *method = hba_authname(port->hba->auth_method);
		const char *keys[] = {"reason", "method"};
		const char *vals[] = {reason, method};
		const bool	raw[] = {false, false};

		if (is_password_method(port->hba->auth_method))
			strlcpy(reason, "password authentication failed", sizeof(reason));
		else
			snprintf(reason, sizeof(reason), "%s authentication failed", method);
		audit_fill_entry_from_port(&e, port, "auth", "LOGIN_FAILED", true);
		audit_json_object(e.detail, sizeof(e.detail), 2, keys, vals, raw);
		(void) audit_queue_enqueue(&e);
		failure_recorded = true;
	}
}

/*
 * Called at every top-level commit (cheap unless a login is pending): the
 * first one is InitPostgres's start-up transaction, after every check that
 * could still refuse the session.
 */
void
audit_auth_xact_commit(void)
{
	if (!login_pending)
		return;
	login_pending = false;
	(void) audit_queue_enqueue(&pending_login);
	/* the session's settings are applied: replica mode from the start? */
	audit_check_replication_role("connection options or ALTER ROLE/DATABASE ... SET", false);
	if (!login_recorded)
	{
		login_recorded = true;
		before_shmem_exit(audit_logout, (Datum) 0);
	}
}

/*
 * FATAL during authentication that the hook above did not see, or after it
 * while the session is being set up.  Runs
 * inside error reporting: no allocation, no error, no recursion.
 */
static void
audit_emit_log(ErrorData *edata)
{
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);

	if (in_log_hook || edata->elevel != FATAL ||
		!(ClientAuthInProgress || login_pending) ||
		MyProcPort == NULL || failure_recorded || !audit_queue_available())
		return;

	in_log_hook = true;
	{
		AuditQueueEntry e;
		const char *keys[] = {"reason", "sqlstate"};
		const char *vals[] = {edata->message ? edata->message : "",
		unpack_sql_state(edata->sqlerrcode)};
		const bool	raw[] = {false, false};

		audit_fill_entry_from_port(&e, MyProcPort, "auth", "LOGIN_FAILED", true);
		audit_json_object(e.detail, sizeof(e.detail), 2, keys, vals, raw);
		(void) audit_queue_enqueue(&e);
		failure_recorded = true;
		login_pending = false;
	}
	in_log_hook = false;
}

void
audit_auth_hooks_install(void)
{
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = audit_client_authentication;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = audit_emit_log;
}
