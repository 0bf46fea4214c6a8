/* SPDX-License-Identifier: MIT */
#include "tmpfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "owner.h"

static int lock_wait(int fd)
{
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return negerrno();
        return 0;
}

static int make_parent(int dirfd, const char *path)
{
        char dir[512];
        const char *slash = strrchr(path, '/');

        if (!slash)
                return 0;
        if ((size_t)(slash - path) >= sizeof(dir))
                return -ENAMETOOLONG;
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        if (mkdirat(dirfd, dir, 0700) == 0)
                stamp_owner_adopt_at(dirfd, dirfd, dir);
        else if (errno != EEXIST)
                return negerrno();
        return 0;
}

int stamp_tmpfile_create_locked(int dirfd, const char *path, int access)
{
        int flags = access | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;

        /*
         * A cleanup may lock and unlink the file between our create and our
         * lock; then the name is free again and we simply try once more.
         */
        for (int attempt = 0; attempt < 8; attempt++) {
                _cleanup_close_ int fd = openat(dirfd, path, flags, 0600);
                struct stat st;
                int r;

                if (fd < 0 && errno == ENOENT) {
                        r = make_parent(dirfd, path);
                        if (r < 0)
                                return r;
                        fd = openat(dirfd, path, flags, 0600);
                }
                if (fd < 0)
                        return negerrno();
                r = lock_wait(fd);
                if (r < 0) {
                        (void)unlinkat(dirfd, path, 0);
                        return r;
                }
                if (fstat(fd, &st) < 0) {
                        r = negerrno();
                        (void)unlinkat(dirfd, path, 0);
                        return r;
                }
                if (st.st_nlink == 0)
                        continue; /* removed under us: the name is free again */
                (void)fchmod(fd, 0600); /* explicit: a umask must not widen or narrow it */
                stamp_owner_adopt(dirfd, fd);
                return TAKE_FD(fd);
        }
        return -EAGAIN;
}

int stamp_tmpfile_remove_unlocked(int dirfd, const char *name)
{
        _cleanup_close_ int fd =
                openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat st;

        if (fd < 0) {
                /* A symlink is nobody's temporary file. */
                if (errno == ELOOP && unlinkat(dirfd, name, 0) == 0)
                        return 1;
                return 0;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return 0;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return 0; /* its owner is alive */
        return unlinkat(dirfd, name, 0) == 0 ? 1 : 0;
}
