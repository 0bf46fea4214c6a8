/* SPDX-License-Identifier: MIT */
#include "owner.h"

#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

/* The store's owner, if files made here must be given to it. */
static bool owner_of(int rootfd, struct stat *ret)
{
        if (geteuid() != 0 || fstat(rootfd, ret) < 0)
                return false;
        return ret->st_uid != 0 || ret->st_gid != 0;
}

void stamp_owner_adopt(int rootfd, int fd)
{
        struct stat owner, st;

        if (!owner_of(rootfd, &owner) || fstat(fd, &st) < 0)
                return;
        if (st.st_uid != owner.st_uid || st.st_gid != owner.st_gid)
                (void)fchown(fd, owner.st_uid, owner.st_gid); /* best effort: see owner.h */
}

void stamp_owner_adopt_at(int rootfd, int dirfd, const char *name)
{
        struct stat owner, st;

        if (!owner_of(rootfd, &owner) || fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return;
        if (st.st_uid != owner.st_uid || st.st_gid != owner.st_gid)
                (void)fchownat(dirfd, name, owner.st_uid, owner.st_gid, AT_SYMLINK_NOFOLLOW);
}
