// Top-level build file: plugin versions only (Android Studio Koala / AGP 8.5 or newer, JDK 17).
plugins {
    id("com.android.application") version "8.5.2" apply false
    id("org.jetbrains.kotlin.android") version "2.0.21" apply false
    id("org.jetbrains.kotlin.jvm") version "2.0.21" apply false
}
