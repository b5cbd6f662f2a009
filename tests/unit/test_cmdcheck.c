/* cmdcheck: shells by identity, interpreters given inline code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "modelmux/cmdcheck.h"

#define ARGV(...) ((char *const *)(const char *const[]){ __VA_ARGS__, NULL })

static void
test_inline(void)
{
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/python3.11", ARGV("python3", "-c", "x")), "python -c");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/python3", ARGV("python3", "-Bc", "x")), "python -c");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/python3", ARGV("python3", "-m", "srv")) == NULL);
	ASSERT_TRUE(cmd_inline_code("/usr/bin/python3", ARGV("python3", "app.py", "-c", "conf")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-ne", "x")), "perl -e");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-E", "x")), "perl -e");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-w", "s.pl")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/node", ARGV("node", "--eval=x")), "node --eval");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/node", ARGV("node", "-p", "x")), "node --eval");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/node", ARGV("node", "server.js")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/mawk", ARGV("awk", "BEGIN{}")), "an awk program");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/gawk", ARGV("gawk", "-f", "p.awk")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/ruby3.1", ARGV("ruby", "-e", "x")), "ruby -e");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/php8.2", ARGV("php", "-r", "x")), "php -r");
	ASSERT_TRUE(cmd_inline_code("/opt/llama/llama-server", ARGV("llama-server", "-c", "4096")) == NULL);
	ASSERT_TRUE(cmd_inline_code("/usr/bin/pythonista", ARGV("pythonista", "-c")) == NULL);
	/* An option's value is skipped, never read as options, and cannot hide what follows. */
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/python3", ARGV("python3", "-W", "ignore", "-Ic", "x")),
	    "python -c");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/python3", ARGV("python3", "-X", "dev", "-c", "x")),
	    "python -c");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/python3", ARGV("python3", "-m", "srv", "-c", "4096")) == NULL);
	ASSERT_TRUE(cmd_inline_code("/usr/bin/python3", ARGV("python3", "-Wc")) == NULL); /* -W c */
	ASSERT_TRUE(cmd_inline_code("/usr/bin/python3", ARGV("python3", "-W")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-wE", "1")), "perl -e");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-I", "lib", "-e", "1")), "perl -e");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-le", "print")), "perl -e");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-MPOSIX", "-e", "1")), "perl -e");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/perl", ARGV("perl", "-Mfeature=say", "s.pl")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/ruby", ARGV("ruby", "-r", "json", "-e", "x")), "ruby -e");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/ruby", ARGV("ruby", "-Ke", "s.rb")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/node", ARGV("node", "-r", "x", "-e", "1")), "node --eval");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/node", ARGV("node", "--print", "1")), "node --eval");
	ASSERT_STR_EQ(cmd_inline_code("/usr/local/bin/deno", ARGV("deno", "eval", "1")), "deno eval");
	ASSERT_TRUE(cmd_inline_code("/usr/local/bin/deno", ARGV("deno", "run", "s.ts")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/php", ARGV("php", "-d", "x=1", "-B", "x")), "php -r");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/lua5.4", ARGV("lua", "-l", "m", "-e", "x")), "lua -e");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/lua5.4", ARGV("lua", "--eval", "x")), "lua -e");
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/awk", ARGV("awk", "-v", "x=1", "--", "BEGIN{}")),
	    "an awk program");
	ASSERT_TRUE(cmd_inline_code("/usr/bin/awk", ARGV("awk", "-v", "x=1", "-f", "p.awk")) == NULL);
	ASSERT_TRUE(cmd_inline_code("/usr/bin/awk", ARGV("awk", "-F:", "--file=p.awk")) == NULL);
	ASSERT_STR_EQ(cmd_inline_code("/usr/bin/gawk", ARGV("gawk", "-e", "BEGIN{}")), "an awk program");
}

static void
test_shell_files(void)
{
	char dir[] = "/tmp/mm-cmdcheck-XXXXXX", copy[64], buf[65536];
	FILE *in, *out;
	size_t n;

	ASSERT_TRUE(cmd_is_shell_file("/bin/sh"));
	ASSERT_FALSE(cmd_is_shell_file("/bin/true"));
	ASSERT_FALSE(cmd_is_shell_file("/nonexistent/x"));
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(copy, sizeof(copy), "%s/llama-server", dir);
	in = fopen("/bin/sh", "rb");
	out = fopen(copy, "wb");
	ASSERT_TRUE(in != NULL && out != NULL);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ASSERT_INT_EQ(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
	ASSERT_TRUE(cmd_is_shell_file(copy)); /* another inode, the same bytes */
	unlink(copy);
	rmdir(dir);
}

int
main(void)
{
	test_inline();
	test_shell_files();
	CHECK_DONE();
}
