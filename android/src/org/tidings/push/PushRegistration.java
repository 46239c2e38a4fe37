package org.tidings.push;

import android.content.Context;
import android.text.TextUtils;

import com.google.android.gms.tasks.OnCompleteListener;
import com.google.android.gms.tasks.Task;
import com.google.firebase.FirebaseApp;
import com.google.firebase.messaging.FirebaseMessaging;

import org.unifiedpush.android.connector.UnifiedPush;

/** What the running app asks about push, from Python through pyjnius
 *  (tidings/app/android_push.py; the decisions are tidings/app/push_setup.py). Tokens and
 *  endpoints arrive asynchronously: the receivers and listeners store them here and Python
 *  polls. Every method catches what the libraries throw, so a phone without Google services
 *  or without a distributor only gets nulls. */
public final class PushRegistration {
    private static volatile String fcmToken;
    private static volatile String[] endpoint;

    private PushRegistration() {}

    /** Whether this APK has Firebase (built with a google-services.json). */
    public static boolean fcmAvailable(Context context) {
        try {
            return !FirebaseApp.getApps(context).isEmpty();
        } catch (RuntimeException e) {
            return false;
        }
    }

    /** Asks Firebase for the token; {@link #fcmToken()} has it once it arrives. */
    public static void requestFcmToken() {
        fcmToken = null;
        try {
            FirebaseMessaging.getInstance().getToken().addOnCompleteListener(
                    new OnCompleteListener<String>() {
                        @Override
                        public void onComplete(Task<String> task) {
                            if (task.isSuccessful()) {
                                fcmToken = task.getResult();
                            } else {
                                android.util.Log.w("tidings", "no FCM token",
                                        task.getException());
                            }
                        }
                    });
        } catch (RuntimeException e) {
            android.util.Log.w("tidings", "FCM unavailable", e);
        }
    }

    public static String fcmToken() {
        return fcmToken;
    }

    /** TidingsFcmService.onNewToken: the app sees the new token too. */
    static void tokenRefreshed(String token) {
        fcmToken = token;
    }

    /** Installed UnifiedPush distributors' package names, one a line ("" for none). */
    public static String distributors(Context context) {
        try {
            return TextUtils.join("\n", UnifiedPush.getDistributors(context));
        } catch (RuntimeException e) {
            return "";
        }
    }

    /** The distributor the user picked before (still installed), or null. */
    public static String savedDistributor(Context context) {
        try {
            return UnifiedPush.getSavedDistributor(context);
        } catch (RuntimeException e) {
            return null;
        }
    }

    /** Registers with {@code distributor}; the endpoint comes to TidingsUnifiedPushReceiver,
     *  which stores it for {@link #endpointUrl()}. {@code vapid}: the server's key. */
    public static void registerUnifiedPush(Context context, String distributor, String vapid) {
        endpoint = null;
        try {
            UnifiedPush.saveDistributor(context, distributor);
            UnifiedPush.register(context, "default", null, vapid);
        } catch (Exception e) {
            android.util.Log.w("tidings", "UnifiedPush registration failed", e);
        }
    }

    /** TidingsUnifiedPushReceiver.onNewEndpoint. */
    static void endpointReceived(String url, String p256dh, String auth) {
        endpoint = new String[] {url, p256dh, auth};
    }

    public static String endpointUrl() {
        String[] current = endpoint;
        return current == null ? null : current[0];
    }

    public static String endpointP256dh() {
        String[] current = endpoint;
        return current == null ? null : current[1];
    }

    public static String endpointAuth() {
        String[] current = endpoint;
        return current == null ? null : current[2];
    }
}
