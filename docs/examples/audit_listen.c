/*
 * audit_listen: print audit_ext alerts as they are sent.
 *
 *	audit_listen [-c channel] [-n count] [-t seconds] "conninfo"
 *
 * Connects with libpq, runs LISTEN on the channel (default audit_alerts),
 * and prints one line per notification:
 *
 *	2026-11-23T19:20:01.123456Z audit_alerts {"alert_id": 1, "rule": ...}
 *
 * (the time is when the notification arrived, UTC).  Stops after -n
 * notifications or -t seconds without one, if given; otherwise runs until
 * interrupted.  Reconnects are left to whoever runs it (systemd, a loop).
 * Build: make listener (in the extension's directory).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

static void
print_now(FILE *out)
{
	struct timeval tv;
	struct tm	tm;
	char		buf[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(out, "%s.%06ldZ", buf, (long) tv.tv_usec);
}

int
main(int argc, char **argv)
{
	const char *channel = "audit_alerts";
	long		max_count = -1;
	long		timeout = -1;
	long		received = 0;
	PGconn	   *conn;
	PGresult   *res;
	char	   *ident;
	char	   *sql;
	int			opt;

	while ((opt = getopt(argc, argv, "c:n:t:")) != -1)
	{
		switch (opt)
		{
			case 'c':
				channel = optarg;
				break;
			case 'n':
				max_count = atol(optarg);
				break;
			case 't':
				timeout = atol(optarg);
				break;
			default:
				fprintf(stderr, "usage: %s [-c channel] [-n count] [-t seconds] conninfo\n", argv[0]);
				return 2;
		}
	}

	conn = PQconnectdb(optind < argc ? argv[optind] : "");
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "audit_listen: %s", PQerrorMessage(conn));
		return 1;
	}
	ident = PQescapeIdentifier(conn, channel, strlen(channel));
	sql = malloc(strlen(ident) + 8);
	sprintf(sql, "LISTEN %s", ident);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "audit_listen: %s", PQerrorMessage(conn));
		return 1;
	}
	PQclear(res);
	PQfreemem(ident);
	free(sql);
	/* tells a script that no alert sent from now on can be missed */
	fprintf(stderr, "listening on %s\n", channel);

	while (max_count < 0 || received < max_count)
	{
		int			sock = PQsocket(conn);
		fd_set		input;
		struct timeval tv;
		int			rc;
		PGnotify   *n;

		FD_ZERO(&input);
		FD_SET(sock, &input);
		tv.tv_sec = timeout;
		tv.tv_usec = 0;
		rc = select(sock + 1, &input, NULL, NULL, timeout >= 0 ? &tv : NULL);
		if (rc < 0)
		{
			if (errno == EINTR)
				continue;
			perror("audit_listen: select");
			break;
		}
		if (rc == 0)
			break;				/* -t seconds without a notification */
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "audit_listen: %s", PQerrorMessage(conn));
			break;
		}
		while ((n = PQnotifies(conn)) != NULL)
		{
			print_now(stdout);
			printf(" %s %s\n", n->relname, n->extra);
			fflush(stdout);
			PQfreemem(n);
			received++;
		}
	}
	PQfinish(conn);
	return 0;
}
