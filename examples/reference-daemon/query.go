package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// query runs SQL on a member (spec/patronictl.md §3.13).
func (x *ctl) query(argv []string) error {
	a, err := parseArgs(argv, map[string]string{
		"-r": "role=", "--role": "role=", "-m": "member=", "--member": "member=", "-d": "db=", "--dbname": "db=",
		"-U": "user=", "--username": "user=", "--password": "password", "--format": "format=",
		"-f": "file=", "--file": "file=", "-c": "command=", "--command": "command=", "--delimiter": "delim=", "--group": "group=",
	})
	if err != nil {
		return err
	}
	if a.has("file") && a.has("command") {
		return fail("--file and --command are mutually exclusive options")
	}
	if !a.has("file") && !a.has("command") {
		return fail("You need to specify either --command or --file")
	}
	if a.has("role") && a.has("member") {
		return fail("--role and --member are mutually exclusive options")
	}
	sql := a.get("command")
	if f := a.get("file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fail("read %s: %v", f, err)
		}
		sql = string(b)
	}
	cl, err := x.cluster(first(a.pos))
	if err != nil {
		return err
	}
	m := x.pickMember(cl, a.get("role"), a.get("member"))
	now := time.Now().Format("2006-01-02 15:04:05")
	if m == nil {
		fmt.Fprintf(x.out, "%s\tNo connection to member %s is available\n", now, a.get("member"))
		return nil
	}
	u, err := url.Parse(m.ConnURL)
	if err != nil {
		return fail("bad conn_url %s", m.ConnURL)
	}
	usr := a.get("user")
	if usr == "" {
		if cu, err := user.Current(); err == nil {
			usr = cu.Username
		}
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	dsn := fmt.Sprintf("host=%s port=%s user=%s connect_timeout=5 application_name='Patroni ctl'", u.Hostname(), port, usr)
	if db := a.get("db"); db != "" {
		dsn += " dbname=" + db
	}
	if a.has("password") {
		dsn += " password=" + strings.TrimSpace(x.prompt("Password", ""))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fmt.Fprintf(x.out, "%s\tNo connection to member %s is available\n", now, m.Name)
		return nil
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		fmt.Fprintf(x.out, "%s\tERROR, %v\n", now, err)
		return nil
	}
	defer rows.Close()
	t := table{}
	for _, f := range rows.FieldDescriptions() {
		t.header = append(t.header, f.Name)
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return fail("read row: %v", err)
		}
		r := make([]string, len(vals))
		for i, v := range vals {
			if v != nil {
				r[i] = fmt.Sprint(v)
			}
		}
		t.rows = append(t.rows, r)
	}
	if err := rows.Err(); err != nil {
		fmt.Fprintf(x.out, "%s\tERROR, %v\n", now, err)
		return nil
	}
	f := a.get("format")
	if f == "" {
		f = "tsv"
	}
	return t.write(x.out, f, "")
}
