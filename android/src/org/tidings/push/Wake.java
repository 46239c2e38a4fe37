package org.tidings.push;

import android.content.Context;

import org.json.JSONException;
import org.json.JSONObject;

/** Starts the Python push service (p4a's ServiceSync, tidings/app/android_service.py). */
public final class Wake {
    /** p4a names the class of `services = Sync:...` {package.domain}.{package.name}.ServiceSync */
    static final String SERVICE = "org.tidings.tidings.ServiceSync";

    private Wake() {}

    static void start(Context context, JSONObject argument) {
        try {
            Class<?> service = Class.forName(SERVICE);
            service.getMethod("start", Context.class, String.class)
                    .invoke(null, context, argument.toString());
        } catch (ReflectiveOperationException e) {
            android.util.Log.e("tidings", "cannot start the push service", e);
        }
    }

    static void wake(Context context, String source) {
        try {
            start(context, new JSONObject().put("kind", "wake").put("source", source));
        } catch (JSONException e) {
            android.util.Log.e("tidings", "bad wake-up", e);
        }
    }

    static void register(Context context, String platform, String token, String p256dh,
                         String auth) {
        try {
            start(context, new JSONObject().put("kind", "register").put("platform", platform)
                    .put("token", token).put("p256dh", p256dh).put("auth", auth));
        } catch (JSONException e) {
            android.util.Log.e("tidings", "bad registration", e);
        }
    }
}
