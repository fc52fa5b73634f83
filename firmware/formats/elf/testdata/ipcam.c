/* A tiny stand-in for a camera daemon, compiled by recipe.sh. */
#include <stdio.h>

static const char banner[] = "ipcam daemon stand-in";

int main(void)
{
	puts(banner);
	return 0;
}
