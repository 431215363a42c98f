/* Declarations checked against Microsoft's applibs reference (see device/README.md); not the SDK header. */
#pragma once

/* learn.microsoft.com: azure-sphere/reference/applibs-reference/applibs-storage/function-storage-getabsolutepathinimagepackage
 * (the caller frees the returned string). */
char *Storage_GetAbsolutePathInImagePackage(const char *relativePath);
