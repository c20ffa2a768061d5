package io.isptf.core

/** Latency of repeated runs: warm-up runs (reported, not in the statistics), then N timed runs. */
data class TimingStats(
    val warmupMs: List<Double>,
    val runsMs: List<Double>,
) {
    val medianMs: Double get() = median(runsMs)
    val minMs: Double get() = runsMs.minOrNull() ?: Double.NaN
    val maxMs: Double get() = runsMs.maxOrNull() ?: Double.NaN

    override fun toString(): String =
        "warm-up ${warmupMs.joinToString { "%.1f".format(it) }} ms; median of ${runsMs.size}: %.1f ms (min %.1f, max %.1f)"
            .format(medianMs, minMs, maxMs)

    companion object {
        fun median(values: List<Double>): Double {
            if (values.isEmpty()) return Double.NaN
            val s = values.sorted()
            val n = s.size
            return if (n % 2 == 1) s[n / 2] else (s[n / 2 - 1] + s[n / 2]) / 2
        }
    }
}

object Timing {
    /** Run `block` `warmup` times, then `runs` times timed with `clock` (nanoseconds). */
    fun <T> measure(
        warmup: Int,
        runs: Int,
        clock: () -> Long = System::nanoTime,
        block: () -> T,
    ): Pair<T?, TimingStats> {
        require(warmup >= 0 && runs >= 1) { "warmup >= 0 and runs >= 1" }
        var last: T? = null

        fun once(): Double {
            val t0 = clock()
            last = block()
            return (clock() - t0) / 1e6
        }
        val w = List(warmup) { once() }
        val r = List(runs) { once() }
        return last to TimingStats(w, r)
    }
}
