plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "io.isptf.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "io.isptf.demo"
        minSdk = 29 // Android 10: NNAPI 1.2, the API level the exports are validated for
        targetSdk = 34
        versionCode = 1
        versionName = "0.1"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }

    // .tflite assets stay uncompressed so that they can be memory-mapped (AssetFileDescriptor).
    // (aaptOptions is deprecated in AGP 8 in favour of androidResources; both set the same list.)
    @Suppress("DEPRECATION")
    aaptOptions {
        noCompress += "tflite"
    }
}

dependencies {
    implementation(project(":core"))
    // LiteRT (TensorFlow Lite) Interpreter with the NNAPI delegate (in the main artifact) and the GPU delegate.
    implementation("org.tensorflow:tensorflow-lite:2.16.1")
    implementation("org.tensorflow:tensorflow-lite-gpu:2.16.1")
    implementation("org.tensorflow:tensorflow-lite-gpu-api:2.16.1")
}
