// The pure Kotlin/JVM core: no Android imports, only the Kotlin stdlib.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

// The unit tests are a plain `main` (io.isptf.core.ParityToolKt, argument "test"): no JUnit, so the
// same tests run here and in tests/android (kotlinc from npm, no Maven download).
tasks.register<JavaExec>("coreTest") {
    group = "verification"
    description = "Runs the core's unit tests (CoreTests) on the JVM."
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("io.isptf.core.ParityToolKt")
    args("test")
}

tasks.named("check") {
    dependsOn("coreTest")
}
