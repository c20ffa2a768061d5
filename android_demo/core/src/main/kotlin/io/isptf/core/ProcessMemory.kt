package io.isptf.core

import java.io.File

/** Process memory as Linux (and so Android) reports it in `/proc/self/status`; null elsewhere. */
object ProcessMemory {
    /** Peak resident set size (VmHWM) in bytes. */
    fun peakRssBytes(): Long? = field("VmHWM")

    /** Current resident set size (VmRSS) in bytes. */
    fun rssBytes(): Long? = field("VmRSS")

    private fun field(name: String): Long? =
        runCatching {
            File("/proc/self/status")
                .readLines()
                .firstOrNull { it.startsWith("$name:") }
                ?.split(Regex("\\s+"))
                ?.getOrNull(1)
                ?.toLong()
                ?.times(1024)
        }.getOrNull()
}
